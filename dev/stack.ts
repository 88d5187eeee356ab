import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { Redis as IORedis } from "ioredis";
import { upsertRegion } from "../worker/src/admin/store.ts";
import { generateApiKey } from "../worker/src/auth/keys.ts";
import { liveNodesKey } from "../worker/src/nodes/live.ts";
import { routingCacheKey } from "../worker/src/routing/snapshot.ts";
import { migrateDb, openDb } from "./db.ts";
import { startNeonWsPipe } from "./neon-ws-pipe.ts";
import { LocalNode, type LocalNodeSpec, type StackNode } from "./nodes.ts";
import { ensurePortFree, freePort, waitForHttp } from "./ports.ts";
import { startPostgres } from "./postgres.ts";
import { startChild, type Child } from "./processes.ts";
import { checkRedis } from "./redis.ts";
import { DEMO_MODELS, seedDemo } from "./seed.ts";
import { writeStackRecord } from "./stack-record.ts";
import { simArgsFor, simModelSpec, type Topology } from "./topology.ts";
import { startUpstashRestAdapter } from "./upstash-rest.ts";

export type { NodeState, StackNode } from "./nodes.ts";

/** Root of the repository. */
export const ROOT = resolve(import.meta.dirname, "..");

/** Options of the local stack; `npm start` takes them from env, tests pass them directly. */
export interface StackOptions {
  /** Folder for persisted local state (embedded Postgres, demo key, signing secret). */
  dataDir: string;
  /** Use this Postgres; otherwise an embedded PGlite under dataDir. */
  databaseUrl?: string;
  redisUrl: string;
  redisPrefix: string;
  /** Round trip (ms) the Upstash-REST adapter adds to every request that writes: the distance to Upstash's primary region (default 0). */
  redisWriteRttMs?: number;
  /** Round trip (ms) it adds to read-only requests: the distance to the nearest read replica (default 0). */
  redisReadRttMs?: number;
  host: string;
  /** Gateway port; 0 picks a free one. */
  gatewayPort: number;
  /** Extra flags for the simulated engine (e.g. ["--inter-token-ms", "20"]); with a topology, for every node's engine, before the node's own. */
  simArgs: string[];
  /** Print the children's output with a [name] prefix. */
  echo: boolean;
  /** Extra BACKPLANE_* settings for the local backplane (tests switch spot watchers on this way); with a topology, for every node, under the node's own. */
  backplaneEnv?: Record<string, string>;
  /**
   * Several nodes in several regions (a file from `loadTopology`, docs/topology.md) instead of the one
   * node `local-1` in region `local`.
   */
  topology?: Topology;
  /** Extra worker vars (`wrangler dev --var`), e.g. shorter timeouts for failover tests; wrangler.toml documents each. */
  workerVars?: Record<string, string>;
  /** Called as each part starts ("Postgres (embedded PGlite)", "worker (wrangler dev)", …); `npm start` prints them. */
  onProgress?: (step: string) => void;
  /** Aborting it during the start stops what has started and rejects. */
  signal?: AbortSignal;
}

/** A running local stack. */
export interface Stack {
  gatewayUrl: string;
  apiKey: string;
  /** The worker's ADMIN_TOKEN (operator access to /admin), kept in `<dataDir>/admin-token`. */
  adminToken: string;
  databaseUrl: string;
  embeddedPostgres: boolean;
  /** Database connections open now (embedded: sessions through its gate; DATABASE_URL: pg_stat_activity on that database). */
  postgresConnections(): Promise<number>;
  redisPrefix: string;
  /** The first node's engine, backplane and id (the only node without a topology). */
  readonly simUrl: string;
  readonly backplaneUrl: string;
  nodeId: string;
  /** Every node, in the topology's order. */
  nodes: StackNode[];
  /** The processes running now: each node's engine and backplane, then the worker. */
  readonly children: Child[];
  /** The host dies: SIGKILL to the node's backplane and engine. Resolves when both are gone. */
  killNode(id: string): Promise<void>;
  /** Graceful drain: SIGTERM to the node's backplane; resolves when it has exited. The engine keeps running. */
  stopNode(id: string): Promise<void>;
  /** Starts what is gone of the node (same id, same ports when free), resumes a paused engine, and resolves once the gateway has taken a heartbeat from it. */
  startNode(id: string): Promise<void>;
  /** Stalls the node's engine (SIGSTOP): connections hang, nothing is answered. */
  pauseNode(id: string): void;
  /** Un-stalls a paused engine (SIGCONT). */
  resumeNode(id: string): void;
  /** Runs the worker's scheduled job now as `cron` would (default `* * * * *`; `0 * * * *` also reconciles). It also runs every minute. */
  runScheduled(cron?: string): Promise<void>;
  close(): Promise<void>;
}

/** Heartbeat period of topology nodes: a killed node is stale after three missed beats, so 3 s instead of 15. */
const TOPOLOGY_HEARTBEAT_INTERVAL_MS = "1000";

/** The nodes to start: the topology's, or the single `local-1` in region `local`. */
function nodeSpecs(opts: StackOptions): LocalNodeSpec[] {
  if (!opts.topology) {
    // The engine serves the local catalogue (dev/seed.ts), unless the caller names its own models.
    const simArgs = opts.simArgs.includes("--model") ? opts.simArgs : [...DEMO_MODELS.flatMap((m) => ["--model", simModelSpec(m)]), ...opts.simArgs];
    return [{ id: "local-1", region: "local", simArgs, backplaneEnv: { ...opts.backplaneEnv }, simName: "sim", backplaneName: "backplane" }];
  }
  return opts.topology.nodes.map((node) => ({
    id: node.id,
    region: node.region,
    simArgs: [...opts.simArgs, ...simArgsFor(node)],
    backplaneEnv: { BACKPLANE_HEARTBEAT_INTERVAL_MS: TOPOLOGY_HEARTBEAT_INTERVAL_MS, ...opts.backplaneEnv, ...node.backplaneEnv },
    simName: `sim:${node.id}`,
    backplaneName: `backplane:${node.id}`,
  }));
}

/** Runs `work` on every node in parallel and waits for all of them, so a failure never leaves a start half-way when clean-up runs. */
async function onEveryNode(all: LocalNode[], work: (node: LocalNode) => Promise<void>): Promise<void> {
  const results = await Promise.allSettled(all.map(work));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
}

function persistedSecret(file: string, make: () => string): string {
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  const value = make();
  writeFileSync(file, `${value}\n`, { mode: 0o600 });
  return value;
}

/**
 * Brings up Postgres (given or embedded), migrations, the Upstash-REST and Neon-WebSocket adapters
 * over the local Redis and Postgres, a simulated engine with a backplane in front of it registered
 * as node `local-1` (or one such pair per node of `opts.topology`, with its regions), the demo tenant
 * and key, and the worker under `wrangler dev`. `close()` stops everything it started, in reverse order.
 */
export async function startStack(opts: StackOptions): Promise<Stack> {
  mkdirSync(opts.dataDir, { recursive: true });
  const cleanups: (() => Promise<void>)[] = [];
  let closing: Promise<void> | null = null;
  const close = () =>
    (closing ??= (async () => {
      for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
    })());
  const progress = (step: string) => {
    opts.signal?.throwIfAborted();
    opts.onProgress?.(step);
  };
  try {
    // A fixed gateway port that is taken fails now, before anything starts (and before this stack's
    // backplanes could heartbeat into the other stack's gateway on that port).
    if (opts.gatewayPort !== 0) await ensurePortFree(opts.host, opts.gatewayPort);
    progress("Redis connection check");
    await checkRedis(opts.redisUrl);
    progress(opts.databaseUrl ? "Postgres (DATABASE_URL) and migrations" : "Postgres (embedded PGlite) and migrations");
    const pg = await startPostgres({ databaseUrl: opts.databaseUrl, dataDir: join(opts.dataDir, "pglite"), host: opts.host });
    cleanups.push(() => pg.close());
    await migrateDb(pg.url);

    progress("Redis adapter (Upstash REST) and Neon WebSocket pipe");
    const redisToken = randomBytes(24).toString("hex");
    const upstash = await startUpstashRestAdapter({
      redisUrl: opts.redisUrl,
      token: redisToken,
      host: opts.host,
      writeRttMs: opts.redisWriteRttMs,
      readRttMs: opts.redisReadRttMs,
    });
    cleanups.push(() => upstash.close());
    const pipe = await startNeonWsPipe({ host: opts.host });
    cleanups.push(() => pipe.close());

    const masterSecret = persistedSecret(join(opts.dataDir, "node-signing-secret"), () => randomBytes(32).toString("hex"));
    const demoKey = persistedSecret(join(opts.dataDir, "demo-key"), generateApiKey);
    // Read by `npm run admin` when neither --token nor SWITCHYARD_ADMIN_TOKEN is given.
    const adminToken = persistedSecret(join(opts.dataDir, "admin-token"), () => randomBytes(32).toString("hex"));
    // The local worker's STRIPE_WEBHOOK_SECRET, kept in `<dataDir>/stripe-webhook-secret`: sign local test events with it.
    const stripeWebhookSecret = persistedSecret(join(opts.dataDir, "stripe-webhook-secret"), () => `whsec_${randomBytes(24).toString("hex")}`);

    // The local worker's DASHBOARD_SECRET (single sign-on state and client secrets at rest).
    const dashboardSecret = persistedSecret(join(opts.dataDir, "dashboard-secret"), () => randomBytes(32).toString("hex"));

    const gatewayPort = opts.gatewayPort === 0 ? await freePort(opts.host) : opts.gatewayPort;
    const gatewayUrl = `http://${opts.host}:${gatewayPort}`;
    const db = openDb(pg.url);
    cleanups.push(() => db.close());
    // Kept open: restarted nodes are seen through their live entry (LocalNode.waitRegistered).
    const redis = new IORedis(opts.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
    redis.on("error", () => {});
    cleanups.push(() => Promise.resolve(redis.disconnect()));
    const context = { root: ROOT, host: opts.host, gatewayUrl, masterSecret, echo: opts.echo, db, redis, redisPrefix: opts.redisPrefix };
    const localNodes = nodeSpecs(opts).map((spec) => new LocalNode(spec, context));
    const first = localNodes[0];
    if (!first) throw new Error("the topology has no nodes");
    const closeNodes = async () => {
      await Promise.all(localNodes.map((node) => node.close()));
    };
    cleanups.push(closeNodes);
    progress(`simulated engine${localNodes.length > 1 ? "s" : ""} ${localNodes.map((n) => n.id).join(", ")}`);
    await onEveryNode(localNodes, (node) => node.startSim());

    await seedDemo(db.db, { demoKey, regionId: opts.topology ? undefined : "local" });
    // The same upsert as `npm run admin -- region upsert`, before any node's heartbeat creates its
    // region without coordinates.
    for (const region of opts.topology?.regions ?? []) {
      const { id, name, latitude, longitude, priceMultiplier } = region;
      await upsertRegion(db.db, "dev-stack", { id, name, latitude, longitude, priceMultiplier: String(priceMultiplier) });
    }
    // The nodes register themselves with their heartbeats; a stale snapshot from a previous run must
    // not shadow that, so drop the cached routing snapshot.
    await redis.del(routingCacheKey(opts.redisPrefix), liveNodesKey(opts.redisPrefix));

    progress(`backplane${localNodes.length > 1 ? "s" : ""} ${localNodes.map((n) => n.id).join(", ")}`);
    await onEveryNode(localNodes, (node) => node.startBackplane());

    const varsFile = join(opts.dataDir, "worker.dev.vars");
    const vars: Record<string, string> = {
      DATABASE_URL: pg.url,
      UPSTASH_REDIS_REST_URL: upstash.url,
      UPSTASH_REDIS_REST_TOKEN: redisToken,
      NODE_SIGNING_SECRET: masterSecret,
      ADMIN_TOKEN: adminToken,
      STRIPE_WEBHOOK_SECRET: stripeWebhookSecret,
      DASHBOARD_SECRET: dashboardSecret,
      NEON_WS_PROXY: pipe.wsProxy,
      REDIS_PREFIX: opts.redisPrefix,
    };
    writeFileSync(varsFile, Object.entries(vars).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join("\n") + "\n", { mode: 0o600 });
    progress(`worker (wrangler dev) on ${gatewayUrl}`);
    const wrangler = startChild(
      "worker",
      [
        join(ROOT, "node_modules/wrangler/bin/wrangler.js"),
        "dev",
        "--ip",
        opts.host,
        "--port",
        String(gatewayPort),
        "--env-file",
        varsFile,
        // Locally request.cf is a fixed object, so region routing takes the caller's location from the
        // x-switchyard-client-location header, which the worker honours only with this var. A --var:
        // the env file only carries keys that wrangler.toml declares (secrets.required or [vars]).
        "--var",
        "TRUST_LOCATION_HEADER:true",
        // Locally every request gets its request_done line (README, "Logs"); in production only failed ones do.
        "--var",
        "LOG_REQUESTS:all",
        ...Object.entries(opts.workerVars ?? {}).flatMap(([k, v]) => ["--var", `${k}:${v}`]),
        "--persist-to",
        join(opts.dataDir, "wrangler"),
        "--inspector-port",
        String(await freePort(opts.host)),
        "--show-interactive-dev-session=false",
        // Lets the stack fire the Cron Trigger locally (wrangler dev does not run crons on its own).
        "--test-scheduled",
        "--log-level",
        "warn",
      ],
      {
        cwd: ROOT,
        echo: opts.echo,
        env: { CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false", WRANGLER_LOG_PATH: join(opts.dataDir, "wrangler-logs") },
      },
    );
    // The nodes stop before the worker (closing twice is a no-op), so their last heartbeat, the one
    // saying they drain, reaches it instead of failing loudly.
    cleanups.push(() => wrangler.stop(), closeNodes);
    try {
      await waitForHttp(`${gatewayUrl}/health`, 60_000, () => wrangler.alive() && opts.signal?.aborted !== true);
    } catch (err) {
      throw new Error(`${String(err)}\nwrangler dev output:\n${wrangler.recentOutput()}`, { cause: err });
    }
    progress("first heartbeats");
    await onEveryNode(localNodes, (node) => node.waitRegistered(30_000));
    opts.signal?.throwIfAborted();
    // Lets `npm run admin --url <gateway>` find this stack's admin token (dev/stack-record.ts).
    const removeRecord = writeStackRecord(gatewayUrl, opts.dataDir);
    cleanups.push(() => Promise.resolve(removeRecord()));
    const runScheduled = async (cron = "* * * * *") => {
      const res = await fetch(`${gatewayUrl}/__scheduled?cron=${encodeURIComponent(cron)}`);
      await res.arrayBuffer();
      if (!res.ok) throw new Error(`scheduled run answered ${res.status}`);
    };
    // One run now, as a deployment's first cron would: it builds the active-key set and seeds the
    // budget counters, which reservations wait for (worker/src/limits/budget-seed.ts).
    progress("first scheduled run");
    await runScheduled();
    // Locally the Cron Triggers run on their schedule too, like wrangler.toml says: every minute, and
    // the hourly one (reconciliation) on the tick that falls in minute 0.
    const cron = setInterval(() => {
      void runScheduled().catch(() => null);
      if (new Date().getUTCMinutes() === 0) void runScheduled("0 * * * *").catch(() => null);
    }, 60_000);
    cron.unref();
    cleanups.push(() => Promise.resolve(clearInterval(cron)));
    const node = (id: string): LocalNode => {
      const found = localNodes.find((n) => n.id === id);
      if (!found) throw new Error(`unknown node "${id}" (the stack runs ${localNodes.map((n) => n.id).join(", ")})`);
      return found;
    };
    return {
      gatewayUrl,
      apiKey: demoKey,
      adminToken,
      databaseUrl: pg.url,
      embeddedPostgres: pg.embedded,
      postgresConnections: () => pg.connections(),
      redisPrefix: opts.redisPrefix,
      get simUrl() {
        return first.simUrl;
      },
      get backplaneUrl() {
        return first.backplaneUrl;
      },
      nodeId: first.id,
      nodes: localNodes,
      get children() {
        return [...localNodes.flatMap((n) => [n.sim, n.backplane]), wrangler];
      },
      killNode: async (id) => node(id).kill(),
      stopNode: async (id) => node(id).stop(),
      startNode: async (id) => node(id).start(),
      pauseNode: (id) => node(id).pause(),
      resumeNode: (id) => node(id).resume(),
      runScheduled,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
