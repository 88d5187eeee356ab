import type { Redis } from "@upstash/redis/cloudflare";
import type { Trace } from "../../../schema/contracts/otlp-trace.ts";
import type { Logger } from "../env.ts";
import { settingsFrom, type Settings } from "../settings.ts";
import { withDb, type Db } from "./db.ts";
import { redisFrom } from "./redis.ts";

/** The secrets the worker uses, read from bindings in one place. Never logged. */
export interface Secrets {
  /** Master secret that node signing keys are derived from (NODE_SIGNING_SECRET). */
  nodeSigning: string;
  /** The operator's admin token (ADMIN_TOKEN); empty disables operator access. */
  adminToken: string;
  /** Stripe's webhook signing secret (STRIPE_WEBHOOK_SECRET). */
  stripeWebhook: string;
  /** The dashboard's secret (DASHBOARD_SECRET): SSO client secrets at rest and SSO state; empty turns single sign-on off. */
  dashboard: string;
}

/**
 * What every piece of the worker needs from the outside world, built once where a request (or a
 * scheduled run) starts and passed down. Nothing else reads bindings: opening a database connection,
 * its deadline and its closing are decided here.
 */
export interface Deps {
  settings: Settings;
  redis: Redis;
  log: Logger;
  secrets: Secrets;
  /** The federated-attention Durable Objects: one per session, and the index of the active ones. */
  fedattn: { sessions: Env["FEDATTN_SESSIONS"]; index: Env["FEDATTN_INDEX"] };
  /** The edge queues' Durable Objects, one per model (queue/edge-queue.ts). */
  edgeQueue: Env["EDGE_QUEUE"];
  /**
   * Runs `fn` on a database connection opened for it and closed when it settles (Workers cannot keep
   * sockets across requests). Bounded by `settings.dbTimeoutMs`: past it the call rejects with a
   * `DbTimeoutError`, and the connection is still closed once `fn` gives up.
   */
  db<T>(fn: (db: Db) => Promise<T>, opts?: { timeoutMs?: number }): Promise<T>;
  /** Hands background work to the runtime (`ctx.waitUntil`): it may outlive the response. */
  waitUntil(p: Promise<unknown>): void;
}

/** A request's dependencies: the platform's, plus who the request is. */
export interface RequestDeps extends Deps {
  requestId: string;
  startedAt: number;
  /**
   * The request's trace (tracing/, docs/tracing.md); absent when tracing is off. `trace.traceId`
   * names it, `trace.exported` says whether it will be sent (for exemplars and logs).
   */
  trace?: Trace | null;
}

/** The database did not answer within its deadline. */
export class DbTimeoutError extends Error {
  constructor(ms: number) {
    super(`database call exceeded its ${ms} ms deadline`);
    this.name = "DbTimeoutError";
  }
}

/**
 * Database connections one isolate opens at once. A burst (many uncached keys, a flood of admin
 * calls) queues here instead of opening a connection per request; queued calls still have their
 * deadline. Single-flight per key (platform/hot-state.ts) keeps a burst on one key to one connection.
 */
export const MAX_DB_CONNECTIONS = 4;
let openConnections = 0;
/** How often a call queued behind the cap looks for a free connection. */
const QUEUE_POLL_MS = 5;

/**
 * Runs `fn` under the isolate's connection cap and the deadline; a call that times out while queued
 * never opens one. A queued call waits on timers of its own rather than being woken by the call
 * that frees a connection: in Workers a continuation runs in the request that resolved it, so a
 * connection opened from a wake-up would belong to the other request, and using it once that
 * request ended fails ("Cannot perform I/O on behalf of a different request").
 */
async function bounded<T>(fn: () => Promise<T>, ms: number): Promise<T> {
  const started = Date.now();
  while (openConnections >= MAX_DB_CONNECTIONS) {
    if (ms > 0 && Date.now() - started >= ms) throw new DbTimeoutError(ms);
    await new Promise((resolve) => setTimeout(resolve, QUEUE_POLL_MS));
  }
  openConnections++;
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    openConnections--;
  };
  const run = (async () => {
    try {
      return await fn();
    } finally {
      release();
    }
  })();
  const left = ms > 0 ? ms - (Date.now() - started) : 0;
  if (ms <= 0) return run;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DbTimeoutError(ms)), Math.max(1, left));
  });
  // The losing side's rejection is handled here, so a late failure is not an unhandled rejection.
  run.catch(() => undefined);
  return Promise.race([run, deadline]).finally(() => {
    if (timer !== undefined) clearTimeout(timer);
  });
}

/** Builds the dependencies from the worker's bindings (the only place besides settings.ts that reads them). */
export function depsFrom(env: Env, waitUntil: (p: Promise<unknown>) => void, log: Logger): Deps {
  const settings = settingsFrom(env);
  return {
    settings,
    redis: redisFrom(env.UPSTASH_REDIS_REST_URL, env.UPSTASH_REDIS_REST_TOKEN, settings.redisTimeoutMs),
    log,
    secrets: { nodeSigning: env.NODE_SIGNING_SECRET, adminToken: env.ADMIN_TOKEN || "", stripeWebhook: env.STRIPE_WEBHOOK_SECRET || "", dashboard: env.DASHBOARD_SECRET || "" },
    fedattn: { sessions: env.FEDATTN_SESSIONS, index: env.FEDATTN_INDEX },
    edgeQueue: env.EDGE_QUEUE,
    db: (fn, opts) => bounded(() => withDb(env.DATABASE_URL, settings.neonWsProxy, fn), opts?.timeoutMs ?? settings.dbTimeoutMs),
    waitUntil,
  };
}
