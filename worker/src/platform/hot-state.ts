import type { Context } from "hono";
import type { Redis } from "@upstash/redis/cloudflare";
import type { AppEnv } from "../env.ts";
import { keyCacheKey, loadKeyIdentity, type KeyCacheEntry } from "../auth/identity.ts";
import { ApiError } from "../errors.ts";
import { liveNodesKey, type LiveNode } from "../nodes/live.ts";
import { circuitKey, type CircuitState } from "../routing/breaker.ts";
import { loadRoutingSnapshot, routingCacheKey, type RoutingSnapshot } from "../routing/snapshot.ts";
import type { Settings } from "../settings.ts";
import { withDb } from "./db.ts";

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
}

const MAX_ISOLATE_KEYS = 10_000;
const isolateKeys = new Map<string, Timed<KeyCacheEntry>>();
let isolateRouting: Timed<RoutingView> | null = null;
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
  routing: RoutingView;
}

/** Dependencies of the loader; all come from bindings through the entry file. */
export interface HotStateDeps {
  redis: Redis;
  settings: Settings;
  databaseUrl: string;
  waitUntil: (p: Promise<unknown>) => void;
  log: (event: string, fields: Record<string, unknown>) => void;
}

/** The loader's dependencies, taken from a request's context (bindings, settings, Redis, waitUntil). */
export function hotStateDeps(c: {
  get: Context<{ Variables: Pick<AppEnv["Variables"], "redis" | "settings" | "log"> }>["get"];
  env: Pick<AppEnv["Bindings"], "DATABASE_URL">;
  executionCtx: Pick<ExecutionContext, "waitUntil">;
}): HotStateDeps {
  // c.get, not c.var: Hono builds a new object on every c.var access.
  return {
    redis: c.get("redis"),
    settings: c.get("settings"),
    databaseUrl: c.env.DATABASE_URL,
    waitUntil: (p) => c.executionCtx.waitUntil(p),
    log: c.get("log"),
  };
}

/**
 * Resolves the caller's key (when `keyHash` is given) and the routing view: from the isolate if
 * fresh, else in one Redis round trip (a pipeline of the GETs and the live-node HGETALL), else the
 * missing parts from Postgres in one connection, written back to Redis in `waitUntil`. Redis
 * failing is not fatal (we fall through to Postgres and log it); Postgres failing on a miss is a 503.
 */
async function load(deps: HotStateDeps, keyHash: string | null, now: number): Promise<{ key: KeyCacheEntry | null; routing: RoutingView }> {
  const { settings, redis } = deps;
  const cachedKey = keyHash === null ? undefined : isolateKeys.get(keyHash);
  let key = cachedKey && cachedKey.until > now ? cachedKey.value : null;
  const cachedRouting = isolateRouting && isolateRouting.until > now ? isolateRouting.value : null;
  if ((keyHash === null || key) && cachedRouting) return { key, routing: cachedRouting };

  const needKey = keyHash !== null && !key;
  let snapshot = cachedRouting?.snapshot ?? null;
  let live: Record<string, LiveNode> = cachedRouting?.live ?? {};
  let circuits: Record<string, CircuitState> = cachedRouting?.circuits ?? {};
  const keyRedisKey = keyHash === null ? "" : keyCacheKey(settings.redisPrefix, keyHash);
  const routingRedisKey = routingCacheKey(settings.redisPrefix);
  try {
    const pipe = redis.pipeline();
    if (needKey) pipe.get<KeyCacheEntry>(keyRedisKey);
    if (!cachedRouting) {
      pipe.get<RoutingSnapshot>(routingRedisKey);
      pipe.hgetall<Record<string, LiveNode>>(liveNodesKey(settings.redisPrefix));
      pipe.hgetall<Record<string, CircuitState>>(circuitKey(settings.redisPrefix));
    }
    const results = await pipe.exec<unknown[]>();
    let i = 0;
    if (needKey) key = (results[i++] as KeyCacheEntry | null) ?? null;
    if (!cachedRouting) {
      snapshot = (results[i++] as RoutingSnapshot | null) ?? null;
      live = (results[i++] as Record<string, LiveNode> | null) ?? {};
      circuits = (results[i++] as Record<string, CircuitState> | null) ?? {};
    }
  } catch (err) {
    deps.log("redis_unavailable", { during: "hot_state", error: String(err) });
  }

  if ((needKey && !key) || !snapshot) {
    const loadKey = needKey && !key && keyHash !== null ? keyHash : null;
    const loadRouting = !snapshot;
    try {
      const loaded = await withDb(deps.databaseUrl, settings.neonWsProxy, async (db) => ({
        key: loadKey === null ? null : await loadKeyIdentity(db, loadKey),
        routing: loadRouting ? await loadRoutingSnapshot(db) : null,
      }));
      if (loaded.key) {
        key = loaded.key;
        const ttl = key.found ? settings.keyCacheRedisSeconds : NEGATIVE_REDIS_SECONDS;
        deps.waitUntil(redis.set(keyRedisKey, key, { ex: ttl }).catch(() => null));
      }
      if (loaded.routing) {
        snapshot = loaded.routing;
        deps.waitUntil(redis.set(routingRedisKey, snapshot, { ex: settings.routingCacheRedisSeconds }).catch(() => null));
      }
    } catch (err) {
      deps.log("database_unavailable", { during: "hot_state", error: String(err) });
      throw new ApiError("dependency_unavailable", "The gateway cannot reach its database right now. Retry in a few seconds.", {
        headers: { "retry-after": "5" },
      });
    }
  }
  if ((needKey && !key) || !snapshot) throw new Error("hot state incomplete after database load");

  if (keyHash !== null && key) rememberKey(keyHash, key, settings.keyCacheIsolateMs, now);
  const routing = cachedRouting ?? { snapshot, live, circuits };
  isolateRouting = { value: routing, until: now + settings.routingCacheIsolateMs };
  return { key, routing };
}

/** Resolves the caller's key and the routing view (see `load`). */
export async function loadHotState(deps: HotStateDeps, keyHash: string, now = Date.now()): Promise<HotState> {
  const { key, routing } = await load(deps, keyHash, now);
  if (!key) throw new Error("key missing after load");
  return { key, routing };
}

/** Resolves only the routing view (node routes, which carry no API key). */
export async function loadRoutingView(deps: HotStateDeps, now = Date.now()): Promise<RoutingView> {
  return (await load(deps, null, now)).routing;
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
}
