/**
 * More isolates of one deployment: extra plain workerd processes running the same worker bundle as
 * an `Edge` (edge.ts), on its database, its Redis prefix and its secrets, as Cloudflare runs one
 * deployment in many isolates. Each gets its own Upstash-REST adapter, as each region reaches
 * Upstash on its own connection; they share the edge's Neon WebSocket pipe (`NEON_WS_PROXY`).
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitForHttp } from "../../dev/ports.ts";
import { startUpstashRestAdapter } from "../../dev/upstash-rest.ts";
import type { Edge } from "./edge.ts";
import type { WorkerBundle, WorkerConfig } from "./worker-bundle.ts";
import { startWorkerd, type Workerd } from "./workerd.ts";

/** An extra isolate of an edge's deployment. */
export interface Isolate {
  /** `http://host:port` of this workerd. */
  url: string;
  workerd: Workerd;
  /** Stops workerd and its adapter. Safe to call twice. */
  close(): Promise<void>;
}

/** Options of `startIsolate`. */
export interface IsolateOptions {
  /** The bundle and config the edge was started with (`startEdge({ bundle, config })`). */
  bundle: WorkerBundle;
  config: WorkerConfig;
  host?: string;
  /** Vars over the edge's own (default none: the same vars as the edge). */
  vars?: Record<string, string>;
}

/**
 * Starts one more workerd of `edge`'s deployment and resolves once its `/health?deep=1` answers
 * (Redis and Postgres reached). Only `STRIPE_WEBHOOK_SECRET` differs from the edge's (the edge does
 * not expose it; nothing here receives webhooks).
 */
export async function startIsolate(edge: Edge, opts: IsolateOptions): Promise<Isolate> {
  const host = opts.host ?? "127.0.0.1";
  const cleanups: (() => Promise<void>)[] = [];
  let closing: Promise<void> | null = null;
  const close = () =>
    (closing ??= (async () => {
      for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
    })());
  try {
    const dir = await mkdtemp(join(tmpdir(), "sy-isolate-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const redisToken = randomBytes(24).toString("hex");
    const upstash = await startUpstashRestAdapter({ redisUrl: edge.redisUrl, token: redisToken, host });
    cleanups.push(() => upstash.close());
    const secrets: Record<string, string> = {
      DATABASE_URL: edge.databaseUrl,
      UPSTASH_REDIS_REST_URL: upstash.url,
      UPSTASH_REDIS_REST_TOKEN: redisToken,
      NODE_SIGNING_SECRET: edge.nodeSigningSecret,
      ADMIN_TOKEN: edge.adminToken,
      STRIPE_WEBHOOK_SECRET: `whsec_${randomBytes(24).toString("hex")}`,
      DASHBOARD_SECRET: edge.dashboardSecret,
    };
    const missing = opts.config.requiredSecrets.filter((name) => !(name in secrets));
    if (missing.length > 0) throw new Error(`wrangler.toml requires secrets an extra isolate does not provide: ${missing.join(", ")}`);
    const workerd = await startWorkerd({
      name: opts.config.name,
      modules: opts.bundle.modules,
      bindings: { ...edge.vars, ...opts.vars, ...secrets },
      compatibilityDate: opts.config.compatibilityDate,
      compatibilityFlags: opts.config.compatibilityFlags,
      host,
      port: 0,
      scheduled: true,
      dir: join(dir, "workerd"),
    });
    cleanups.push(() => workerd.close());
    try {
      await waitForHttp(`${workerd.url}/health?deep=1`, 15_000, () => workerd.alive());
    } catch (err) {
      throw new Error(`${String(err)}\nworkerd output:\n${workerd.recentOutput()}`, { cause: err });
    }
    return { url: workerd.url, workerd, close };
  } catch (err) {
    await close();
    throw err;
  }
}
