import type { Redis } from "@upstash/redis/cloudflare";
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
const waiting: (() => void)[] = [];

function releaseConnection(): void {
  const next = waiting.shift();
  if (next) next();
  else openConnections--;
}

/** Runs `fn` under the isolate's connection cap and the deadline; a call that times out while queued never opens one. */
function bounded<T>(fn: () => Promise<T>, ms: number): Promise<T> {
  let timedOut = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const granted =
    openConnections < MAX_DB_CONNECTIONS
      ? ((openConnections++, Promise.resolve()))
      : new Promise<void>((resolve) => waiting.push(resolve));
  const run = granted.then(async () => {
    if (timedOut) {
      releaseConnection();
      throw new DbTimeoutError(ms);
    }
    try {
      return await fn();
    } finally {
      releaseConnection();
    }
  });
  if (ms <= 0) return run;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      timedOut = true;
      reject(new DbTimeoutError(ms));
    }, ms);
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
    secrets: { nodeSigning: env.NODE_SIGNING_SECRET, adminToken: env.ADMIN_TOKEN || "", stripeWebhook: env.STRIPE_WEBHOOK_SECRET || "" },
    db: (fn, opts) => bounded(() => withDb(env.DATABASE_URL, settings.neonWsProxy, fn), opts?.timeoutMs ?? settings.dbTimeoutMs),
    waitUntil,
  };
}
