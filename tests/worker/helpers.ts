import "../support/provided-context.ts";
import { createExecutionContext, createScheduledController, env, waitOnExecutionContext } from "cloudflare:test";
import { exports } from "cloudflare:workers";
import { inject } from "vitest";
import { redisFrom } from "../../worker/src/platform/redis.ts";
import { withDb, type Db } from "../../worker/src/platform/db.ts";
import { createApiKey as createStoredKey } from "../../worker/src/admin/store.ts";
import { addActiveKey } from "../../worker/src/auth/key-set.ts";

/** Calls the worker's fetch handler as a client would. */
export function gateway(path: string, init: RequestInit & { key?: string | null } = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const key = init.key === undefined ? inject("keys").valid : init.key;
  if (key !== null) headers.set("authorization", `Bearer ${key}`);
  if (init.body !== undefined && !headers.has("content-type")) headers.set("content-type", "application/json");
  return exports.default.fetch(new Request(`http://gateway.test${path}`, { ...init, headers }));
}

/** POSTs a JSON body to the gateway. */
export function post(path: string, body: unknown, key?: string | null): Promise<Response> {
  return gateway(path, { method: "POST", body: JSON.stringify(body), key });
}

/** Runs queries against the test database through the same driver the worker uses. */
export function query<T>(fn: (db: Db) => Promise<T>): Promise<T> {
  return withDb(env.DATABASE_URL, env.NEON_WS_PROXY || null, fn);
}

/** The worker's Redis client, for cache assertions. */
export function redis() {
  return redisFrom(env.UPSTASH_REDIS_REST_URL, env.UPSTASH_REDIS_REST_TOKEN);
}

/** Polls `fn` until it returns a value other than undefined (for waitUntil effects). */
export async function eventually<T>(fn: () => Promise<T | undefined>, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Splits an SSE body into its `data:` payloads. */
export function sseData(text: string): string[] {
  return text
    .split("\n\n")
    .filter((e) => e.startsWith("data:"))
    .map((e) => e.slice(e.startsWith("data: ") ? 6 : 5));
}

/** Runs the worker's scheduled job now (moves queued usage and audit events to Postgres). */
export async function flushNow(): Promise<void> {
  const { default: worker } = await import("../../worker/src/index.ts");
  const ctx = createExecutionContext();
  worker.scheduled(createScheduledController({ cron: "* * * * *", scheduledTime: Date.now() }), env, ctx);
  await waitOnExecutionContext(ctx);
}

/**
 * Creates an API key straight in Postgres, as the admin API does, and adds it to the gateway's
 * active-key set as the admin API does too (auth/key-set.ts): a key inserted behind the gateway's
 * back is refused until the scheduled job's next rebuild of the set.
 */
export async function createApiKey(...args: Parameters<typeof createStoredKey>): ReturnType<typeof createStoredKey> {
  const created = await createStoredKey(...args);
  await addActiveKey(redis(), env.REDIS_PREFIX, created.row.hash);
  return created;
}
