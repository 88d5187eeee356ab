import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { Redis as IORedis } from "ioredis";
import { deriveNodeSecret } from "../schema/contracts/signing.ts";
import { generateApiKey } from "../worker/src/auth/keys.ts";
import { eq } from "drizzle-orm";
import { nodes } from "../schema/tables/index.ts";
import { migrateDb, openDb, type NodeDb } from "./db.ts";
import { startNeonWsPipe } from "./neon-ws-pipe.ts";
import { freePort, waitForHttp } from "./ports.ts";
import { startPostgres } from "./postgres.ts";
import { startChild, type Child } from "./processes.ts";
import { checkRedis } from "./redis.ts";
import { seedDemo } from "./seed.ts";
import { startUpstashRestAdapter } from "./upstash-rest.ts";

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
  host: string;
  /** Gateway port; 0 picks a free one. */
  gatewayPort: number;
  /** Extra flags for the simulated engine (e.g. ["--inter-token-ms", "20"]). */
  simArgs: string[];
  /** Print the children's output with a [name] prefix. */
  echo: boolean;
  /** Extra BACKPLANE_* settings for the local backplane (tests switch spot watchers on this way). */
  backplaneEnv?: Record<string, string>;
}

/** A running local stack. */
export interface Stack {
  gatewayUrl: string;
  apiKey: string;
  /** The worker's ADMIN_TOKEN (operator access to /admin), kept in `<dataDir>/admin-token`. */
  adminToken: string;
  databaseUrl: string;
  embeddedPostgres: boolean;
  redisPrefix: string;
  simUrl: string;
  backplaneUrl: string;
  nodeId: string;
  children: Child[];
  /** Runs the worker's scheduled job now (it also runs every minute). */
  runScheduled(): Promise<void>;
  close(): Promise<void>;
}

/** Waits until the node's heartbeats have registered it with the gateway. */
async function waitForNode(db: NodeDb, nodeId: string, url: string, timeoutMs: number, backplane: Child): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const [row] = await db.db.select({ at: nodes.lastHeartbeatAt, url: nodes.url }).from(nodes).where(eq(nodes.id, nodeId));
    // The URL changes on every run, so a row left by an earlier run does not count.
    if (row?.at && row.url === url) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`node ${nodeId} did not register with the gateway within ${timeoutMs} ms\nbackplane output:\n${backplane.recentOutput()}`);
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
 * as node `local-1`, the demo tenant and key, and the worker under `wrangler dev`. `close()` stops
 * everything it started, in reverse order.
 */
export async function startStack(opts: StackOptions): Promise<Stack> {
  mkdirSync(opts.dataDir, { recursive: true });
  const cleanups: (() => Promise<void>)[] = [];
  const children: Child[] = [];
  let closing: Promise<void> | null = null;
  const close = () =>
    (closing ??= (async () => {
      for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
    })());
  try {
    await checkRedis(opts.redisUrl);
    const pg = await startPostgres({ databaseUrl: opts.databaseUrl, dataDir: join(opts.dataDir, "pglite"), host: opts.host });
    cleanups.push(() => pg.close());
    await migrateDb(pg.url);

    const redisToken = randomBytes(24).toString("hex");
    const upstash = await startUpstashRestAdapter({ redisUrl: opts.redisUrl, token: redisToken, host: opts.host });
    cleanups.push(() => upstash.close());
    const pipe = await startNeonWsPipe({ host: opts.host });
    cleanups.push(() => pipe.close());

    const masterSecret = persistedSecret(join(opts.dataDir, "node-signing-secret"), () => randomBytes(32).toString("hex"));
    const demoKey = persistedSecret(join(opts.dataDir, "demo-key"), generateApiKey);
    // Read by `npm run admin` when neither --token nor SWITCHYARD_ADMIN_TOKEN is given.
    const adminToken = persistedSecret(join(opts.dataDir, "admin-token"), () => randomBytes(32).toString("hex"));
    // The local worker's STRIPE_WEBHOOK_SECRET, kept in `<dataDir>/stripe-webhook-secret`: sign local test events with it.
    const stripeWebhookSecret = persistedSecret(join(opts.dataDir, "stripe-webhook-secret"), () => `whsec_${randomBytes(24).toString("hex")}`);
    const nodeId = "local-1";
    const nodeSecret = await deriveNodeSecret(masterSecret, nodeId, 1);

    const [simPort, backplanePort] = [await freePort(opts.host), await freePort(opts.host)];
    const simUrl = `http://${opts.host}:${simPort}`;
    const sim = startChild("sim", ["backplane/src/main.ts", "sim", "--host", opts.host, "--port", String(simPort), ...opts.simArgs], {
      cwd: ROOT,
      echo: opts.echo,
    });
    children.push(sim);
    cleanups.push(() => sim.stop());
    await waitForHttp(`${simUrl}/health`, 15_000, sim.alive);

    const gatewayPort = opts.gatewayPort === 0 ? await freePort(opts.host) : opts.gatewayPort;
    const gatewayUrl = `http://${opts.host}:${gatewayPort}`;
    const db = openDb(pg.url);
    cleanups.push(() => db.close());
    await seedDemo(db.db, { demoKey, regionId: "local" });
    // The node registers itself with its heartbeats; a stale snapshot from a previous run must not
    // shadow that, so drop the cached routing snapshot.
    const redis = new IORedis(opts.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await redis.del(`${opts.redisPrefix}routing:v1`, `${opts.redisPrefix}nodes:live`);
    redis.disconnect();

    const backplaneUrl = `http://${opts.host}:${backplanePort}`;
    const backplane = startChild("backplane", ["backplane/src/main.ts", "start"], {
      cwd: ROOT,
      echo: opts.echo,
      env: {
        BACKPLANE_NODE_ID: nodeId,
        BACKPLANE_REGION: "local",
        BACKPLANE_SECRET: nodeSecret,
        BACKPLANE_HOST: opts.host,
        BACKPLANE_PORT: String(backplanePort),
        BACKPLANE_PUBLIC_URL: backplaneUrl,
        BACKPLANE_GATEWAY_URL: gatewayUrl,
        BACKPLANE_ENGINES: `kind=sim,id=sim-0,url=${simUrl}`,
        BACKPLANE_LOG_LEVEL: "warn",
        ...opts.backplaneEnv,
      },
    });
    children.push(backplane);
    cleanups.push(() => backplane.stop());
    await waitForHttp(`${backplaneUrl}/health`, 15_000, backplane.alive);

    const varsFile = join(opts.dataDir, "worker.dev.vars");
    const vars: Record<string, string> = {
      DATABASE_URL: pg.url,
      UPSTASH_REDIS_REST_URL: upstash.url,
      UPSTASH_REDIS_REST_TOKEN: redisToken,
      NODE_SIGNING_SECRET: masterSecret,
      ADMIN_TOKEN: adminToken,
      STRIPE_WEBHOOK_SECRET: stripeWebhookSecret,
      NEON_WS_PROXY: pipe.wsProxy,
      REDIS_PREFIX: opts.redisPrefix,
    };
    writeFileSync(varsFile, Object.entries(vars).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join("\n") + "\n", { mode: 0o600 });
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
    children.push(wrangler);
    cleanups.push(() => wrangler.stop());
    try {
      await waitForHttp(`${gatewayUrl}/health`, 60_000, wrangler.alive);
    } catch (err) {
      throw new Error(`${String(err)}\nwrangler dev output:\n${wrangler.recentOutput()}`);
    }
    await waitForNode(db, nodeId, backplaneUrl, 30_000, backplane);
    const runScheduled = async () => {
      const res = await fetch(`${gatewayUrl}/__scheduled?cron=${encodeURIComponent("* * * * *")}`);
      await res.arrayBuffer();
      if (!res.ok) throw new Error(`scheduled run answered ${res.status}`);
    };
    // Locally the Cron Trigger runs on its schedule too: every minute, like wrangler.toml says.
    const cron = setInterval(() => void runScheduled().catch(() => null), 60_000);
    cron.unref();
    cleanups.push(async () => clearInterval(cron));
    return { gatewayUrl, apiKey: demoKey, adminToken, databaseUrl: pg.url, embeddedPostgres: pg.embedded, redisPrefix: opts.redisPrefix, simUrl, backplaneUrl, nodeId, children, runScheduled, close };
  } catch (err) {
    await close();
    throw err;
  }
}
