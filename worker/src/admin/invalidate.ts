/**
 * How admin changes reach the gateway within seconds. A request resolves its key from the isolate
 * (KEY_CACHE_ISOLATE_SECONDS, 5 s by default), else Redis (KEY_CACHE_REDIS_SECONDS, 300 s), else
 * Postgres; the key's cached identity carries its tenant's status, its environment, and the limit
 * overrides and budgets of its tenant, environment and key. So every change that affects admission
 * deletes the Redis entries of every key it affects (a tenant's or environment's change: all their
 * keys), and a global limit change deletes the routing snapshot (ROUTING_CACHE_*), which carries the
 * global limits. Other isolates then pick the change up when their own short cache expires; this
 * isolate's caches are dropped at once.
 *
 * A request in another isolate that read Postgres just before the change may write the old entry
 * back to Redis just after the delete, so the delete is repeated once a moment later (waitUntil).
 * If Redis cannot be reached the change is kept (it is committed) and the response says so in the
 * `x-switchyard-cache` header: it then takes effect within KEY_CACHE_REDIS_SECONDS.
 */
import { eq, inArray } from "drizzle-orm";
import { apiKeys } from "../../../schema/tables/index.ts";
import { keyCacheKey } from "../auth/identity.ts";
import { clearIsolateCaches } from "../platform/hot-state.ts";
import { routingCacheKey } from "../routing/snapshot.ts";
import type { Context } from "hono";
import type { AppEnv } from "../env.ts";
import type { AdminDb } from "./store.ts";

/** What an admin change affects at admission. */
export type Affected = { tenantId: string } | { environmentId: string } | { keyIds: string[] } | { routing: true };

/** What dropping caches needs of a request (admin routes and the Stripe webhook both qualify). */
export type CacheContext = Pick<Context<AppEnv>, "get" | "header" | "executionCtx">;

/** Delay of the second delete that beats a concurrent cache refill. */
const REPEAT_DELETE_MS = 1_500;
/** Keys per DEL command. */
const CHUNK = 500;

/** The Redis keys to delete for a change (read before a delete, while the rows still exist). */
export async function cacheKeysOf(db: AdminDb, prefix: string, affected: Affected): Promise<string[]> {
  if ("routing" in affected) return [routingCacheKey(prefix)];
  const where =
    "tenantId" in affected
      ? eq(apiKeys.tenantId, affected.tenantId)
      : "environmentId" in affected
        ? eq(apiKeys.environmentId, affected.environmentId)
        : affected.keyIds.length > 0
          ? inArray(apiKeys.id, affected.keyIds)
          : null;
  if (where === null) return [];
  const rows = await db.select({ hash: apiKeys.hash }).from(apiKeys).where(where);
  return rows.map((r) => keyCacheKey(prefix, r.hash));
}

async function deleteAll(c: CacheContext, keys: string[]): Promise<void> {
  for (let i = 0; i < keys.length; i += CHUNK) await c.get("deps").redis.del(...keys.slice(i, i + CHUNK));
}

/** Deletes the cache entries a committed change made stale (see the file comment). */
export async function dropCaches(c: CacheContext, keys: string[]): Promise<void> {
  clearIsolateCaches();
  if (keys.length === 0) return;
  try {
    await deleteAll(c, keys);
  } catch (err) {
    c.get("deps").log("admin_cache_invalidation_failed", { requestId: c.get("deps").requestId, keys: keys.length, error: String(err) });
    c.header("x-switchyard-cache", "stale");
    return;
  }
  c.executionCtx.waitUntil(
    new Promise((resolve) => setTimeout(resolve, REPEAT_DELETE_MS))
      .then(() => deleteAll(c, keys))
      .catch((err: unknown) => c.get("deps").log("admin_cache_invalidation_failed", { requestId: c.get("deps").requestId, repeat: true, error: String(err) })),
  );
}
