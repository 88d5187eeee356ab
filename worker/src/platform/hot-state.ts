import { activeKeyMarkerKey, activeKeySetKey } from "../auth/key-set.ts";
import { keyCacheKey, loadKeyIdentity, type KeyCacheEntry } from "../auth/identity.ts";
import { ApiError } from "../errors.ts";
import { liveNodesKey, type LiveNode } from "../nodes/live.ts";
import { circuitKey, type CircuitState } from "../routing/breaker.ts";
import { lastRoutingCacheKey, loadRoutingSnapshot, routingCacheKey, type RoutingSnapshot } from "../routing/snapshot.ts";
import { queueRateReads, ratesFrom, usageWindow, type ReservationRates } from "../routing/reservation-usage.ts";
import type { Deps } from "./deps.ts";

/**
 * What a request needs before it can be routed, and what happens when a dependency fails
 * (docs/limits.md, "When Redis or Postgres fails"):
 *
 * - Fresh: the isolate's copy (KEY_CACHE_ISOLATE_SECONDS, ROUTING_CACHE_ISOLATE_SECONDS), else one
 *   Redis round trip, else Postgres (single-flight per key and for the snapshot), written back to Redis.
 * - Redis down or slow (every call has the client's deadline, platform/redis.ts): the isolate keeps
 *   serving its last routing view (snapshot, live node state, circuits) for up to
 *   ROUTING_STALE_MAX_SECONDS, judging node liveness as of when it last read it, and stops asking
 *   Redis for REDIS_BACKOFF_MS after a failure so an outage costs one deadline, not one per request.
 *   Keys the isolate saw keep working from its copy for as long; other keys are looked up in Postgres.
 * - Postgres down or slow: a missing snapshot is served from the long-lived last copy in Redis (or
 *   the isolate's; kept 7 days), and a cached key's identity past its refresh age is served as is while the
 *   refresh fails. Only a key never seen before gets 503.
 * - Unknown keys: refused after one Redis read when the active-key set (auth/key-set.ts) says the
 *   key does not exist, without touching Postgres.
 */

interface Timed<T> {
  value: T;
  until: number;
}

/** The routing snapshot (catalogue + registered nodes) with the nodes' live heartbeat state. */
export interface RoutingView {
  snapshot: RoutingSnapshot;
  live: Record<string, LiveNode>;
  /** Circuit breaker state of the nodes that have one (routing/breaker.ts). */
  circuits: Record<string, CircuitState>;
  /** When `live` and `circuits` were read from Redis (unix ms): node liveness is judged as of then. */
  liveAt: number;
  /**
   * Reserving tenants' delivered tokens per second (routing/reservation-usage.ts), read in the same
   * round trip; null when unknown (Redis did not answer: pick.ts treats reservations as before
   * enforcement).
   */
  reservationRates: ReservationRates;
}

/** A key's identity as cached in Redis: the entry and when it was read from Postgres. */
interface CachedKey {
  entry: KeyCacheEntry;
  /** Unix ms; absent in entries written before it existed (they expire on their own TTL). */
  cachedAt?: number;
}

const MAX_ISOLATE_KEYS = 10_000;
const isolateKeys = new Map<string, Timed<KeyCacheEntry> & { seenAt: number }>();
let isolateRouting: Timed<RoutingView> | null = null;
/** Until when this isolate does not ask Redis for hot state (after a failure). */
let redisBackoffUntil = 0;
/** Postgres loads in flight in this isolate, so a burst on an uncached key opens one connection. */
const inFlight = new Map<string, Promise<unknown>>();

/** Misses are remembered for less time than hits, so a key created seconds ago starts working quickly. */
const NEGATIVE_REDIS_SECONDS = 10;
/** After a failed Redis read, hot state comes from the isolate for this long before Redis is tried again. */
export const REDIS_BACKOFF_MS = 1_000;
/** The last snapshot copy in Redis outlives any Postgres outage worth riding out. */
const LAST_SNAPSHOT_SECONDS = 7 * 86_400;
/** Background refreshes of one key or the snapshot across isolates: one per this many seconds. */
const REFRESH_LOCK_SECONDS = 10;

function rememberKey(hash: string, entry: KeyCacheEntry, ttlMs: number, now: number): void {
  if (isolateKeys.size >= MAX_ISOLATE_KEYS && !isolateKeys.has(hash)) {
    const oldest = isolateKeys.keys().next();
    if (!oldest.done) isolateKeys.delete(oldest.value);
  }
  isolateKeys.delete(hash);
  isolateKeys.set(hash, { value: entry, until: now + ttlMs, seenAt: now });
}

function singleFlight<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const running = inFlight.get(key) as Promise<T> | undefined;
  if (running) return running;
  const started = fn().finally(() => inFlight.delete(key));
  inFlight.set(key, started);
  return started;
}

/** What a request needs before it can be routed. */
export interface HotState {
  key: KeyCacheEntry;
  routing: RoutingView;
}

const unavailable = (): ApiError =>
  new ApiError("dependency_unavailable", "The gateway cannot reach its database right now. Retry in a few seconds.", {
    headers: { "retry-after": "5" },
  });

/** What one Redis round trip brought back; null fields were not asked for or not there. */
interface RedisRead {
  ok: boolean;
  key: CachedKey | null;
  /** Whether the active-key set is trusted (its marker exists) and holds the key. */
  keySet: { built: boolean; member: boolean };
  snapshot: RoutingSnapshot | null;
  live: Record<string, LiveNode> | null;
  circuits: Record<string, CircuitState> | null;
  rates: ReservationRates;
}

async function readRedis(deps: Deps, keyHash: string | null, wantRouting: boolean, now: number): Promise<RedisRead> {
  const read: RedisRead = { ok: false, key: null, keySet: { built: false, member: false }, snapshot: null, live: null, circuits: null, rates: null };
  if (now < redisBackoffUntil) return read;
  const prefix = deps.settings.redisPrefix;
  try {
    const pipe = deps.redis.pipeline();
    if (keyHash !== null) {
      pipe.get<CachedKey | KeyCacheEntry>(keyCacheKey(prefix, keyHash));
      pipe.sismember(activeKeySetKey(prefix), keyHash);
      pipe.exists(activeKeyMarkerKey(prefix));
    }
    if (wantRouting) {
      pipe.get<RoutingSnapshot>(routingCacheKey(prefix));
      pipe.hgetall<Record<string, LiveNode>>(liveNodesKey(prefix));
      pipe.hgetall<Record<string, CircuitState>>(circuitKey(prefix));
    }
    // Reserved throughput: skipped while the isolate's last snapshot had no reservation at all.
    const window = usageWindow(deps.settings.reservationWindowSeconds);
    const rateReads = wantRouting && (isolateRouting?.value.snapshot.reservations?.length ?? 1) > 0 ? queueRateReads(pipe, prefix, window, now) : 0;
    const results = await pipe.exec<unknown[]>();
    let i = 0;
    if (keyHash !== null) {
      const raw = results[i++] as CachedKey | KeyCacheEntry | null;
      // Entries written before `cachedAt` existed are the bare KeyCacheEntry.
      read.key = raw === null ? null : "entry" in raw ? raw : { entry: raw };
      read.keySet.member = Number(results[i++]) === 1;
      read.keySet.built = Number(results[i++]) === 1;
    }
    if (wantRouting) {
      read.snapshot = (results[i++] as RoutingSnapshot | null) ?? null;
      read.live = (results[i++] as Record<string, LiveNode> | null) ?? {};
      read.circuits = (results[i++] as Record<string, CircuitState> | null) ?? {};
      read.rates = ratesFrom(results.slice(i, i + rateReads) as (Record<string, unknown> | null)[], window, now);
      i += rateReads;
    }
    read.ok = true;
  } catch (err) {
    redisBackoffUntil = now + REDIS_BACKOFF_MS;
    deps.log("redis_unavailable", { during: "hot_state", error: String(err) });
  }
  return read;
}

/** Loads a key from Postgres (one load per key per isolate at a time) and caches it in Redis. */
function loadKeyFromDb(deps: Deps, hash: string): Promise<KeyCacheEntry> {
  return singleFlight(`key:${hash}`, async () => {
    const entry = await deps.db((db) => loadKeyIdentity(db, hash), { timeoutMs: deps.settings.hotDbTimeoutMs });
    const cached: CachedKey = { entry, cachedAt: Date.now() };
    const ttl = entry.found ? deps.settings.keyCacheStaleSeconds : NEGATIVE_REDIS_SECONDS;
    deps.waitUntil(deps.redis.set(keyCacheKey(deps.settings.redisPrefix, hash), cached, { ex: ttl }).catch(() => null));
    return entry;
  });
}

/** Builds the snapshot from Postgres (one load per isolate at a time) and writes both Redis copies. */
function loadSnapshotFromDb(deps: Deps): Promise<RoutingSnapshot> {
  return singleFlight("routing", async () => {
    const snapshot = await deps.db((db) => loadRoutingSnapshot(db), { timeoutMs: deps.settings.hotDbTimeoutMs });
    const prefix = deps.settings.redisPrefix;
    const pipe = deps.redis.pipeline();
    pipe.set(routingCacheKey(prefix), snapshot, { ex: deps.settings.routingCacheRedisSeconds });
    // The last copy outlives the fresh one: it is what the gateway serves while Postgres is down.
    pipe.set(lastRoutingCacheKey(prefix), snapshot, { ex: LAST_SNAPSHOT_SECONDS });
    deps.waitUntil(pipe.exec().catch(() => null));
    return snapshot;
  });
}

/** Refreshes a key's cached identity in the background, once across isolates (SET NX), when it has aged. */
function refreshKeyLater(deps: Deps, hash: string): void {
  const lock = `${deps.settings.redisPrefix}refresh:key:${hash}`;
  deps.waitUntil(
    deps.redis
      .set(lock, 1, { nx: true, ex: REFRESH_LOCK_SECONDS })
      .then((won) => (won === "OK" ? loadKeyFromDb(deps, hash) : null))
      .catch((err: unknown) => deps.log("key_refresh_failed", { error: String(err) })),
  );
}

/**
 * The caller's key: the isolate's copy, else what Redis had, else Postgres; refused without a
 * database lookup when the active-key set says no such key exists.
 */
async function resolveKey(deps: Deps, hash: string, read: RedisRead, now: number): Promise<KeyCacheEntry> {
  const { settings } = deps;
  if (read.key) {
    const age = read.key.cachedAt === undefined ? 0 : now - read.key.cachedAt;
    if (age > settings.keyCacheRedisSeconds * 1000) refreshKeyLater(deps, hash);
    return read.key.entry;
  }
  if (read.ok && read.keySet.built && !read.keySet.member) return { found: false };
  // Not cached, and the set cannot tell (not built yet, or Redis down): ask Postgres.
  if (read.ok && !read.keySet.built) deps.log("active_key_set_missing", { action: "database lookup; the scheduled job rebuilds the set" });
  try {
    return await loadKeyFromDb(deps, hash);
  } catch (err) {
    deps.log("database_unavailable", { during: "key_lookup", error: String(err) });
    throw unavailable();
  }
}

/** The routing view after a Redis read: fresh parts from Redis, else the isolate's last view, else Postgres and the last Redis copy. */
async function resolveRouting(deps: Deps, read: RedisRead, now: number): Promise<RoutingView> {
  const last = isolateRouting?.value ?? null;
  const staleOk = last !== null && now - last.liveAt <= deps.settings.routingStaleMaxSeconds * 1000;
  if (!read.ok && last !== null && staleOk) {
    // Redis is unreachable: keep routing on what this isolate last saw (reserved throughput unknown).
    return last.reservationRates === null ? last : { ...last, reservationRates: null };
  }
  let snapshot = read.snapshot;
  if (!snapshot) {
    try {
      snapshot = await loadSnapshotFromDb(deps);
    } catch (err) {
      deps.log("database_unavailable", { during: "routing_snapshot", error: String(err) });
      snapshot = (await lastSnapshotCopy(deps)) ?? last?.snapshot ?? null;
      if (!snapshot) throw unavailable();
      deps.log("routing_snapshot_stale", { builtAt: new Date(snapshot.builtAt).toISOString() });
    }
  }
  if (!read.ok) {
    // Redis down and nothing recent in the isolate: route on the snapshot alone (nodes that never
    // heartbeat) or the last live state we had, however old.
    return { snapshot, live: last?.live ?? {}, circuits: last?.circuits ?? {}, liveAt: last?.liveAt ?? now, reservationRates: null };
  }
  return { snapshot, live: read.live ?? {}, circuits: read.circuits ?? {}, liveAt: now, reservationRates: read.rates };
}

async function lastSnapshotCopy(deps: Deps): Promise<RoutingSnapshot | null> {
  if (Date.now() < redisBackoffUntil) return null;
  try {
    return await deps.redis.get<RoutingSnapshot>(lastRoutingCacheKey(deps.settings.redisPrefix));
  } catch {
    return null;
  }
}

async function load(deps: Deps, keyHash: string | null, now: number): Promise<{ key: KeyCacheEntry | null; routing: RoutingView }> {
  const { settings } = deps;
  const cachedKey = keyHash === null ? undefined : isolateKeys.get(keyHash);
  let key = cachedKey && cachedKey.until > now ? cachedKey.value : null;
  const cachedRouting = isolateRouting && isolateRouting.until > now ? isolateRouting.value : null;
  if ((keyHash === null || key) && cachedRouting) return { key, routing: cachedRouting };

  const needKey = keyHash !== null && !key;
  const read = await readRedis(deps, needKey ? keyHash : null, !cachedRouting, now);
  if (!read.ok && needKey && cachedKey && now - cachedKey.seenAt <= settings.routingStaleMaxSeconds * 1000) {
    // Redis is unreachable: a key this isolate already knows keeps its last identity.
    key = cachedKey.value;
  }
  const routing = cachedRouting ?? (await resolveRouting(deps, read, now));
  if (keyHash !== null && !key) key = await resolveKey(deps, keyHash, read, now);
  if (keyHash !== null && key && (read.ok || !cachedKey)) rememberKey(keyHash, key, settings.keyCacheIsolateMs, now);
  if (!cachedRouting) isolateRouting = { value: routing, until: now + settings.routingCacheIsolateMs };
  return { key, routing };
}

/** Resolves the caller's key (by the hash of a well-formed key) and the routing view. */
export async function loadHotState(deps: Deps, keyHash: string, now = Date.now()): Promise<HotState> {
  const { key, routing } = await load(deps, keyHash, now);
  if (!key) throw new Error("key missing after load");
  return { key, routing };
}

/** Resolves only the routing view (node routes, which carry no API key). */
export async function loadRoutingView(deps: Deps, now = Date.now()): Promise<RoutingView> {
  return (await load(deps, null, now)).routing;
}

/** The isolate's current routing snapshot, if it has one (the request's end measures reserving tenants' tokens by it). */
export function isolateSnapshot(): RoutingSnapshot | null {
  return isolateRouting?.value.snapshot ?? null;
}

/** The isolate's latest live node state, if it has one (a request that waited reads the fleet as of now, not as of its arrival). */
export function isolateLive(): Record<string, LiveNode> | null {
  return isolateRouting?.value.live ?? null;
}

/** Writes a node's new live state through to this isolate's cached routing view. */
export function rememberLiveNode(nodeId: string, live: LiveNode): void {
  if (isolateRouting) isolateRouting.value = { ...isolateRouting.value, live: { ...isolateRouting.value.live, [nodeId]: live } };
}

/** Writes a node's new circuit state through to this isolate's cached routing view. */
export function rememberCircuit(nodeId: string, state: CircuitState | null): void {
  if (!isolateRouting) return;
  const circuits = { ...isolateRouting.value.circuits };
  if (state === null) delete circuits[nodeId];
  else circuits[nodeId] = state;
  isolateRouting.value = { ...isolateRouting.value, circuits };
}

/** Drops the isolate caches (tests, and the admin paths that change keys or nodes in this isolate). */
export function clearIsolateCaches(): void {
  isolateKeys.clear();
  isolateRouting = null;
  redisBackoffUntil = 0;
}
