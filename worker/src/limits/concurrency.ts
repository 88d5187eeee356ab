import type { Redis } from "@upstash/redis/cloudflare";
import { layerId, type AdmissionSubject, type Layer, type RedisBatch } from "./types.ts";

/** A held (or refused) in-flight slot; `release()` frees it and is safe to call more than once. */
export interface ConcurrencyLease {
  acquired: boolean;
  /** When refused: the layer with no free slot. */
  blocked: { layer: Layer } | null;
  /**
   * Frees the slot at every layer; never rejects (an unreleased lease expires on its own). With a
   * batch, only adds the commands to it (the caller executes it).
   */
  release(batch?: RedisBatch): Promise<void>;
  /** When Redis did not answer in time or failed: the cap was skipped (fail-open). */
  degraded: boolean;
}

/** Layers with an in-flight cap, in the order the script checks them. */
const CONCURRENCY_LAYERS = ["tenant", "key"] as const satisfies readonly Layer[];
// Leases outlive a crashed or evicted isolate only this long. Ten minutes covers long streamed
// completions (a lease is not renewed while a stream runs, so it must outlast the longest one).
const DEFAULT_LEASE_MS = 10 * 60_000;
const DEFAULT_TIMEOUT_MS = 1_000;

// One sorted set per layer: member = request id, score = lease expiry (ms). All or nothing: a request
// takes a slot at every layer or at none, so a refusal at the key never holds a tenant slot.
// Returns 0 when acquired, else the 1-based index of the first full layer.
// KEYS: the sets. ARGV: now, expiry, request id, lease ms, then one limit per key.
const ACQUIRE_SCRIPT = `
local now = tonumber(ARGV[1])
local lease = tonumber(ARGV[4])
for i = 1, #KEYS do
  redis.call("ZREMRANGEBYSCORE", KEYS[i], "-inf", "(" .. ARGV[1])
  if redis.call("ZCARD", KEYS[i]) >= tonumber(ARGV[4 + i]) then
    return i
  end
end
for i = 1, #KEYS do
  redis.call("ZADD", KEYS[i], ARGV[2], ARGV[3])
  -- The set lives as long as its longest lease (callers may pass different lease lengths).
  local last = redis.call("ZRANGE", KEYS[i], -1, -1, "WITHSCORES")
  local ttl = math.max(lease, math.ceil(tonumber(last[2]) - now))
  redis.call("PEXPIRE", KEYS[i], ttl)
end
return 0
`;

interface AcquireScript {
  exec(keys: string[], args: string[]): Promise<number>;
}

// Module scope so the script's SHA is computed once per client; `exec` runs EVALSHA and falls back to
// EVAL on NOSCRIPT.
const scripts = new WeakMap<Redis, AcquireScript>();

function acquireScript(redis: Redis): AcquireScript {
  let script = scripts.get(redis);
  if (!script) {
    script = redis.createScript<number>(ACQUIRE_SCRIPT);
    scripts.set(redis, script);
  }
  return script;
}

const noop = (): Promise<void> => Promise.resolve();

/**
 * Takes an in-flight slot at the tenant and key layers in one atomic script (one round trip).
 * Fails open: an outage of Redis must not take the API down, so a timeout or error acquires with
 * `degraded: true`. Expiry times use this isolate's clock, as ratelimit's own scripts do.
 */
export async function acquireConcurrency(
  redis: Redis,
  prefix: string,
  subject: AdmissionSubject,
  opts: { leaseMs?: number; timeoutMs?: number; requestId: string } = { requestId: crypto.randomUUID() },
): Promise<ConcurrencyLease> {
  const layers: Layer[] = [];
  const limits: number[] = [];
  for (const layer of CONCURRENCY_LAYERS) {
    const cap = subject.limits[layer].concurrency;
    if (cap !== null) {
      layers.push(layer);
      limits.push(cap);
    }
  }
  if (layers.length === 0) return { acquired: true, blocked: null, release: noop, degraded: false };

  const keys = layers.map((layer) => `${prefix}cc:${layerId(subject, layer)}`);
  const leaseMs = opts.leaseMs ?? DEFAULT_LEASE_MS;
  const now = Date.now();
  const args = [String(now), String(now + leaseMs), opts.requestId, String(leaseMs), ...limits.map(String)];
  const release = once(async (batch?: RedisBatch) => {
    const pipeline = batch ?? redis.pipeline();
    for (const key of keys) pipeline.zrem(key, opts.requestId);
    if (!batch) await pipeline.exec();
  });

  const result = await withTimeout(acquireScript(redis).exec(keys, args), opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  switch (result.kind) {
    case "timeout":
      // The script may still land after we gave up; releasing anyway keeps that late slot from
      // being held for the whole lease.
      return { acquired: true, blocked: null, release, degraded: true };
    case "error":
      return { acquired: true, blocked: null, release: noop, degraded: true };
    case "value": {
      if (result.value === 0) return { acquired: true, blocked: null, release, degraded: false };
      const layer = layers[result.value - 1];
      // An index outside the layers would mean a script/caller mismatch; treat it as unlimited.
      if (layer === undefined) return { acquired: true, blocked: null, release, degraded: true };
      return { acquired: false, blocked: { layer }, release: noop, degraded: false };
    }
  }
}

type Timed<T> = { kind: "value"; value: T } | { kind: "timeout" } | { kind: "error" };

function withTimeout<T>(promise: Promise<T>, timeoutMs: number): Promise<Timed<T>> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<Timed<T>>((resolve) => {
    timer = setTimeout(() => resolve({ kind: "timeout" }), timeoutMs);
  });
  const settled = promise.then(
    (value): Timed<T> => ({ kind: "value", value }),
    (): Timed<T> => ({ kind: "error" }),
  );
  return Promise.race([settled, timedOut]).finally(() => {
    if (timer !== undefined) clearTimeout(timer);
  });
}

/** Runs `fn` at most once, swallowing its failure: the lease expires by itself if Redis is down. */
function once(fn: (batch?: RedisBatch) => Promise<void>): (batch?: RedisBatch) => Promise<void> {
  let run: Promise<void> | null = null;
  return (batch) => {
    run ??= fn(batch).catch(() => undefined);
    return run;
  };
}
