/**
 * The gateway as the benchmark measures it: the real worker bundle under plain workerd, on a fresh
 * Postgres database and Redis key prefix, with every policy on (four rate-limit layers, concurrency
 * leases, a tenant budget, metering) and wrangler.toml's Durable Objects (in memory, so /v1/fedattn
 * is served). Backplanes are the caller's: they register by heartbeat.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { migrateDb, openDb } from "../../dev/db.ts";
import { startNeonWsPipe } from "../../dev/neon-ws-pipe.ts";
import { waitForHttp } from "../../dev/ports.ts";
import { createDatabase, dropDatabase } from "../../dev/postgres.ts";
import { checkRedis } from "../../dev/redis.ts";
import { seedDemo } from "../../dev/seed.ts";
import { startUpstashRestAdapter } from "../../dev/upstash-rest.ts";
import { budgets } from "../../schema/tables/index.ts";
import { newId } from "../../worker/src/admin/store.ts";
import { generateApiKey } from "../../worker/src/auth/keys.ts";
import { routingCacheKey } from "../../worker/src/routing/snapshot.ts";
import { deleteRedisPrefix } from "../teardown.ts";
import { bundleWorker, readWorkerConfig, type WorkerBundle, type WorkerConfig } from "./worker-bundle.ts";
import { startWorkerd, type Workerd } from "./workerd.ts";

/**
 * Limits of every layer: finite, so each layer's check runs on every request, and far above what
 * two cores can send, so none of them ever refuses. Concurrency leases exist at the tenant and key
 * layers only (worker/src/limits/types.ts).
 */
export const BENCH_LIMITS: Record<string, string> = {
  LIMIT_GLOBAL_RPM: "100000000",
  LIMIT_GLOBAL_TPM: "100000000000",
  LIMIT_TENANT_RPM: "50000000",
  LIMIT_TENANT_TPM: "50000000000",
  LIMIT_TENANT_CONCURRENCY: "100000",
  LIMIT_ENVIRONMENT_RPM: "20000000",
  LIMIT_ENVIRONMENT_TPM: "20000000000",
  LIMIT_KEY_RPM: "10000000",
  LIMIT_KEY_TPM: "10000000000",
  LIMIT_KEY_CONCURRENCY: "50000",
};

/** The tenant's monthly token budget: reserved and settled on every request, never reached. */
export const BENCH_TENANT_TOKENS_PER_MONTH = 1_000_000_000_000_000;

/** Options of `startEdge`. */
export interface EdgeOptions {
  /** A Postgres admin URL: a fresh database is created on that server and dropped by `close()`. */
  pgAdminUrl: string;
  redisUrl: string;
  /** Key prefix of this run (default `sy:bench:<hex>:`); its keys are deleted by `close()`. */
  redisPrefix?: string;
  /** Name of the fresh database (default `sy_bench_<hex>`). */
  databaseName?: string;
  host?: string;
  /** 0 (default): a free port. */
  port?: number;
  /** Region of the demo environment; backplanes register in it (`BACKPLANE_REGION`). */
  regionId?: string;
  /** Round trip (ms) the Upstash-REST adapter adds to every Redis request that writes (default 0: Redis next door). */
  redisWriteRttMs?: number;
  /** Round trip (ms) it adds to read-only Redis requests (default 0). */
  redisReadRttMs?: number;
  /** Extra or changed worker vars, over wrangler.toml's and `BENCH_LIMITS`. */
  vars?: Record<string, string>;
  /** A bundle from `bundleWorker` to reuse (bundling takes about 2 s). */
  bundle?: WorkerBundle;
  /** The wrangler config read by `readWorkerConfig`, to reuse. */
  config?: WorkerConfig;
  /** Keep the database and the Redis keys after `close()` (for looking at them). */
  keepData?: boolean;
}

/** The gateway, running. */
export interface Edge {
  /** `http://host:port` of the worker. */
  url: string;
  /** The demo key (tenant `tenantId`, environment `environmentId`). */
  apiKey: string;
  /** The worker's ADMIN_TOKEN (operator access to /admin). */
  adminToken: string;
  /** The worker's NODE_SIGNING_SECRET: backplanes sign with `deriveNodeSecret(it, nodeId, 1)`. */
  nodeSigningSecret: string;
  /** The worker's DASHBOARD_SECRET (the dashboard's single sign-on key): another isolate of the deployment shares it. */
  dashboardSecret: string;
  databaseUrl: string;
  redisUrl: string;
  redisPrefix: string;
  tenantId: string;
  environmentId: string;
  regionId: string;
  /** The workerd process (all of the worker's CPU is in it). */
  workerdPid: number;
  workerd: Workerd;
  /** The worker's vars as bound (no secrets). */
  vars: Record<string, string>;
  /** The bundle it serves and its wrangler config, for starting another edge without bundling again. */
  bundle: WorkerBundle;
  config: WorkerConfig;
  /** Runs the worker's Cron Trigger job now (moves queued usage from Redis to Postgres) and waits for it. */
  runScheduled(cron?: string): Promise<void>;
  /** Stops workerd and the adapters, drops the database and deletes the Redis keys. Stop the backplanes first, so their last heartbeat still reaches the worker. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * Starts the gateway under workerd with a fresh database (migrated, demo tenant, environment, key and
 * catalogue seeded, tenant budget set), the Upstash-REST adapter over `redisUrl` and the Neon
 * WebSocket pipe; resolves once `/health?deep=1` answers (Redis and Postgres reached from workerd).
 */
export async function startEdge(opts: EdgeOptions): Promise<Edge> {
  const suffix = randomBytes(5).toString("hex");
  const redisPrefix = opts.redisPrefix ?? `sy:bench:${suffix}:`;
  const databaseName = opts.databaseName ?? `sy_bench_${suffix}`;
  const host = opts.host ?? "127.0.0.1";
  const regionId = opts.regionId ?? "local";
  const cleanups: (() => Promise<void>)[] = [];
  let closing: Promise<void> | null = null;
  const close = () =>
    (closing ??= (async () => {
      for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
    })());

  try {
    const workDir = await mkdtemp(join(tmpdir(), "sy-edge-"));
    cleanups.push(() => rm(workDir, { recursive: true, force: true }));
    await checkRedis(opts.redisUrl);
    // The slow, independent steps (bundling, reading wrangler.toml, the database) run side by side;
    // all of them settle before a failure is raised, so the clean-up knows about the database.
    const [bundle, config, databaseUrl] = await allSettledOrThrow([
      opts.bundle ?? bundleWorker(join(workDir, "bundle")),
      opts.config ?? readWorkerConfig(),
      (async () => {
        const url = await createDatabase(opts.pgAdminUrl, databaseName);
        if (!opts.keepData) cleanups.push(() => dropDatabase(opts.pgAdminUrl, databaseName));
        await migrateDb(url);
        return url;
      })(),
    ] as const);
    if (!opts.keepData) cleanups.push(() => deleteRedisPrefix(opts.redisUrl, redisPrefix));

    const redisToken = randomBytes(24).toString("hex");
    const upstash = await startUpstashRestAdapter({ redisUrl: opts.redisUrl, token: redisToken, host, writeRttMs: opts.redisWriteRttMs, readRttMs: opts.redisReadRttMs });
    cleanups.push(() => upstash.close());
    const pipe = await startNeonWsPipe({ host });
    cleanups.push(() => pipe.close());

    const apiKey = generateApiKey();
    const db = openDb(databaseUrl);
    let seeded: Awaited<ReturnType<typeof seedDemo>>;
    try {
      seeded = await seedDemo(db.db, { demoKey: apiKey, regionId });
      await db.db.insert(budgets).values({
        id: newId("bud"),
        scope: "tenant",
        scopeId: seeded.tenantId,
        kind: "tokens",
        period: "month",
        amount: BENCH_TENANT_TOKENS_PER_MONTH,
      });
    } finally {
      await db.close();
    }

    const adminToken = randomBytes(32).toString("hex");
    const nodeSigningSecret = randomBytes(32).toString("hex");
    const dashboardSecret = randomBytes(32).toString("hex");
    const secrets: Record<string, string> = {
      DATABASE_URL: databaseUrl,
      UPSTASH_REDIS_REST_URL: upstash.url,
      UPSTASH_REDIS_REST_TOKEN: redisToken,
      NODE_SIGNING_SECRET: nodeSigningSecret,
      ADMIN_TOKEN: adminToken,
      STRIPE_WEBHOOK_SECRET: `whsec_${randomBytes(24).toString("hex")}`,
      DASHBOARD_SECRET: dashboardSecret,
    };
    const missing = config.requiredSecrets.filter((name) => !(name in secrets));
    if (missing.length > 0) throw new Error(`wrangler.toml requires secrets the benchmark does not provide: ${missing.join(", ")}`);
    const vars: Record<string, string> = {
      ...config.vars,
      ...BENCH_LIMITS,
      REDIS_PREFIX: redisPrefix,
      NEON_WS_PROXY: pipe.wsProxy,
      ...opts.vars,
    };

    const workerd = await startWorkerd({
      name: config.name,
      modules: bundle.modules,
      bindings: { ...vars, ...secrets },
      // wrangler.toml's Durable Objects (the federated-attention coordinator), stored in memory.
      durableObjects: config.durableObjects,
      compatibilityDate: config.compatibilityDate,
      compatibilityFlags: config.compatibilityFlags,
      host,
      port: opts.port ?? 0,
      scheduled: true,
      dir: join(workDir, "workerd"),
    });
    cleanups.push(() => workerd.close());
    try {
      await waitForHttp(`${workerd.url}/health?deep=1`, 15_000, () => workerd.alive());
    } catch (err) {
      throw new Error(`${String(err)}\nworkerd output:\n${workerd.recentOutput()}`, { cause: err });
    }
    // As a deployment's first cron: builds the active-key set and seeds the budget counters.
    await workerd.runScheduled();

    return {
      url: workerd.url,
      apiKey,
      adminToken,
      nodeSigningSecret,
      dashboardSecret,
      databaseUrl,
      redisUrl: opts.redisUrl,
      redisPrefix,
      tenantId: seeded.tenantId,
      environmentId: seeded.environmentId,
      regionId,
      workerdPid: workerd.pid,
      workerd,
      vars,
      bundle,
      config,
      runScheduled: async (cron) => {
        await workerd.runScheduled(cron);
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** Like `Promise.all`, but waits for every promise before rejecting with the first failure. */
async function allSettledOrThrow<T extends readonly unknown[]>(promises: { [K in keyof T]: Promise<T[K]> | T[K] }): Promise<T> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

/** A node as `GET /admin/nodes` shows it (the fields read here). */
interface AdminNode {
  id: string;
  healthy: boolean;
  last_heartbeat_at: string | null;
}

/**
 * Resolves once the worker routes to every node in `ids`: each is registered and healthy in
 * `GET /admin/nodes`, and no routing snapshot taken before it registered is left (the Redis copy is
 * dropped, and the isolate's copy has outlived ROUTING_CACHE_ISOLATE_SECONDS).
 */
export async function waitForNodes(edge: Edge, ids: string[], timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let seen: AdminNode[] = [];
  for (;;) {
    try {
      const res = await fetch(`${edge.url}/admin/nodes`, { headers: { authorization: `Bearer ${edge.adminToken}` }, signal: AbortSignal.timeout(5_000) });
      if (res.ok) seen = ((await res.json()) as { data: AdminNode[] }).data;
      else await res.arrayBuffer();
    } catch {
      // workerd busy or restarting: ask again
    }
    const ready = ids.every((id) => seen.some((n) => n.id === id && n.healthy && n.last_heartbeat_at !== null));
    if (ready) break;
    if (!edge.workerd.alive()) throw new Error(`workerd exited while waiting for nodes\n${edge.workerd.recentOutput()}`);
    if (Date.now() > deadline) {
      const state = seen.map((n) => `${n.id}: ${n.healthy ? "healthy" : "unhealthy"}`).join(", ") || "none registered";
      throw new Error(`nodes ${ids.join(", ")} were not all healthy within ${timeoutMs} ms (${state})`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const redis = new Redis(edge.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  redis.on("error", () => {});
  try {
    await redis.del(routingCacheKey(edge.redisPrefix));
  } finally {
    redis.disconnect();
  }
  // The worker's own fallback for an empty var is 1 s (worker/src/settings.ts).
  const isolateMs = Number(edge.vars.ROUTING_CACHE_ISOLATE_SECONDS || "1") * 1000;
  await new Promise((r) => setTimeout(r, isolateMs + 100));
}
