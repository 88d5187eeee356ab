import type { Redis } from "@upstash/redis/cloudflare";
import { and, gt, isNotNull, isNull } from "drizzle-orm";
import { apiKeys } from "../../../schema/tables/index.ts";
import type { Db } from "../platform/db.ts";

/**
 * The set of every usable key's hash, in Redis, so that an unknown key costs one Redis read and never
 * a database lookup (auth/middleware.ts, platform/hot-state.ts). It is kept exact by the admin API
 * (a created or rotated key is added before the key is shown; a revoked one removed) and rebuilt by
 * the every-minute scheduled job, which also repairs it after Redis lost its data. The set is only
 * trusted while its marker exists: the marker is written by a completed rebuild, so an empty Redis
 * (flushed, failed over, new) is never read as "no key exists".
 */

/** Redis key of the set of usable key hashes. */
export function activeKeySetKey(prefix: string): string {
  return `${prefix}keys:active`;
}

/** Redis key of the marker a completed rebuild writes (its value: when). */
export function activeKeyMarkerKey(prefix: string): string {
  return `${prefix}keys:active:built`;
}

/** Members per SADD/SREM command. */
const CHUNK = 1_000;
/** Revoked keys older than this are assumed gone from the set already (a rebuild removes the newer ones). */
const REVOKED_LOOKBACK_MS = 7 * 86_400_000;

/** Adds a new key's hash (called before the key is returned to its creator). */
export async function addActiveKey(redis: Redis, prefix: string, hash: string): Promise<void> {
  await redis.sadd(activeKeySetKey(prefix), hash);
}

/** Removes revoked keys' hashes. */
export async function removeActiveKeys(redis: Redis, prefix: string, hashes: string[]): Promise<void> {
  for (let i = 0; i < hashes.length; i += CHUNK) {
    const [first, ...rest] = hashes.slice(i, i + CHUNK);
    if (first !== undefined) await redis.srem(activeKeySetKey(prefix), first, ...rest);
  }
}

/**
 * Adds every unrevoked key and removes the recently revoked ones, then writes the marker. Additive on
 * purpose: a key created while this runs is never dropped from the set. (Keys deleted with their
 * tenant or environment may linger; they cost one database lookup each, and their miss is cached.)
 */
export async function rebuildActiveKeys(db: Db, redis: Redis, prefix: string, now = Date.now()): Promise<number> {
  const [usable, revoked] = await Promise.all([
    db.select({ hash: apiKeys.hash }).from(apiKeys).where(isNull(apiKeys.revokedAt)),
    db
      .select({ hash: apiKeys.hash })
      .from(apiKeys)
      .where(and(isNotNull(apiKeys.revokedAt), gt(apiKeys.revokedAt, new Date(now - REVOKED_LOOKBACK_MS)))),
  ]);
  const key = activeKeySetKey(prefix);
  for (let i = 0; i < usable.length; i += CHUNK) {
    const [first, ...rest] = usable.slice(i, i + CHUNK).map((r) => r.hash);
    if (first !== undefined) await redis.sadd(key, first, ...rest);
  }
  await removeActiveKeys(
    redis,
    prefix,
    revoked.map((r) => r.hash),
  );
  await redis.set(activeKeyMarkerKey(prefix), now);
  return usable.length;
}
