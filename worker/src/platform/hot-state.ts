import type { Redis } from "@upstash/redis/cloudflare";
import { keyCacheKey, loadKeyIdentity, type KeyCacheEntry } from "../auth/identity.ts";
import { ApiError } from "../errors.ts";
import { loadRoutingSnapshot, routingCacheKey, type RoutingSnapshot } from "../routing/snapshot.ts";
import type { Settings } from "../settings.ts";
import { withDb } from "./db.ts";

interface Timed<T> {
  value: T;
  until: number;
}

const MAX_ISOLATE_KEYS = 10_000;
const isolateKeys = new Map<string, Timed<KeyCacheEntry>>();
let isolateRouting: Timed<RoutingSnapshot> | null = null;
/** Misses are remembered for less time than hits, so a key created seconds ago starts working quickly. */
const NEGATIVE_REDIS_SECONDS = 10;

function rememberKey(hash: string, entry: KeyCacheEntry, ttlMs: number, now: number): void {
  if (isolateKeys.size >= MAX_ISOLATE_KEYS) {
    const oldest = isolateKeys.keys().next();
    if (!oldest.done) isolateKeys.delete(oldest.value);
  }
  isolateKeys.set(hash, { value: entry, until: now + ttlMs });
}

/** What a request needs before it can be routed. */
export interface HotState {
  key: KeyCacheEntry;
  routing: RoutingSnapshot;
}

/** Dependencies of the loader; all come from bindings through the entry file. */
export interface HotStateDeps {
  redis: Redis;
  settings: Settings;
  databaseUrl: string;
  waitUntil: (p: Promise<unknown>) => void;
  log: (event: string, fields: Record<string, unknown>) => void;
}

/**
 * Resolves the caller's key and the routing snapshot: from the isolate if fresh, else in one Redis
 * round trip (a pipeline of both GETs), else from Postgres in one connection, written back to Redis
 * in `waitUntil`. Redis failing is not fatal (we fall through to Postgres and log it); Postgres
 * failing on a miss is a 503.
 */
export async function loadHotState(deps: HotStateDeps, keyHash: string, now = Date.now()): Promise<HotState> {
  const { settings, redis } = deps;
  const cachedKey = isolateKeys.get(keyHash);
  let key = cachedKey && cachedKey.until > now ? cachedKey.value : null;
  let routing = isolateRouting && isolateRouting.until > now ? isolateRouting.value : null;
  if (key && routing) return { key, routing };

  const keyRedisKey = keyCacheKey(settings.redisPrefix, keyHash);
  const routingRedisKey = routingCacheKey(settings.redisPrefix);
  try {
    const pipe = redis.pipeline();
    if (!key) pipe.get<KeyCacheEntry>(keyRedisKey);
    if (!routing) pipe.get<RoutingSnapshot>(routingRedisKey);
    const results = await pipe.exec<(KeyCacheEntry | RoutingSnapshot | null)[]>();
    let i = 0;
    if (!key) key = (results[i++] as KeyCacheEntry | null) ?? null;
    if (!routing) routing = (results[i++] as RoutingSnapshot | null) ?? null;
  } catch (err) {
    deps.log("redis_unavailable", { during: "hot_state", error: String(err) });
  }

  if (!key || !routing) {
    const needKey = !key;
    const needRouting = !routing;
    try {
      const loaded = await withDb(deps.databaseUrl, settings.neonWsProxy, async (db) => ({
        key: needKey ? await loadKeyIdentity(db, keyHash) : null,
        routing: needRouting ? await loadRoutingSnapshot(db) : null,
      }));
      if (loaded.key) {
        key = loaded.key;
        const ttl = key.found ? settings.keyCacheRedisSeconds : NEGATIVE_REDIS_SECONDS;
        deps.waitUntil(redis.set(keyRedisKey, key, { ex: ttl }).catch(() => null));
      }
      if (loaded.routing) {
        routing = loaded.routing;
        deps.waitUntil(redis.set(routingRedisKey, routing, { ex: settings.routingCacheRedisSeconds }).catch(() => null));
      }
    } catch (err) {
      deps.log("database_unavailable", { during: "hot_state", error: String(err) });
      throw new ApiError("dependency_unavailable", "The gateway cannot reach its database right now. Retry in a few seconds.", {
        headers: { "retry-after": "5" },
      });
    }
  }
  if (!key || !routing) throw new Error("hot state incomplete after database load");

  rememberKey(keyHash, key, settings.keyCacheIsolateMs, now);
  isolateRouting = { value: routing, until: now + settings.routingCacheIsolateMs };
  return { key, routing };
}

/** Drops the isolate caches (tests, and the admin paths that change keys or nodes in this isolate). */
export function clearIsolateCaches(): void {
  isolateKeys.clear();
  isolateRouting = null;
}
