/**
 * The caches' Redis side (docs/caching.md). Reads are one round trip (GET, or MGET for a batch's
 * inputs) under CACHE_READ_TIMEOUT_MS; writes are one script per request, sent in waitUntil. Failure
 * mode: fail open to the GPU. A read that fails or is late is a miss; a write that fails is dropped
 * (logged). Never an error to the client.
 *
 * Size bound per tenant: every entry a tenant stores is listed in its sorted set `cache:idx:<tenant>`
 * (score: the entry's expiry, unix ms) with its size in the hash `cache:sz:<tenant>` (field `*`:
 * the tenant's total). The write script first forgets entries already expired, then evicts the
 * entries closest to expiry (for one TTL: the oldest) until the new ones fit, all in one atomic
 * script, so the total never passes CACHE_TENANT_MAX_BYTES.
 */
import type { Redis } from "@upstash/redis/cloudflare";

/** One entry to store: its key, its JSON text and how long it lives. */
export interface CacheWrite {
  key: string;
  value: string;
  ttlMs: number;
}

/** Rejects after `ms`; the losing side's rejection is handled so it is never unhandled. */
function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`cache read exceeded its ${ms} ms deadline`)), ms);
  });
  promise.catch(() => undefined);
  return Promise.race([promise, deadline]).finally(() => {
    if (timer !== undefined) clearTimeout(timer);
  });
}

/** The client parses JSON values itself (automatic deserialisation); a value that was not JSON stays text. */
function parsed(value: unknown): unknown {
  if (typeof value !== "string") return value;
  try {
    return JSON.parse(value) as unknown;
  } catch {
    return null;
  }
}

/** Reads entries in one round trip; null for each one absent. Throws when Redis fails or is late (the caller's miss). */
export async function readEntries(redis: Redis, keys: string[], timeoutMs: number): Promise<unknown[]> {
  if (keys.length === 0) return [];
  const values = await withDeadline(keys.length === 1 ? redis.get<unknown>(keys[0] ?? "").then((v) => [v]) : redis.mget<unknown[]>(...keys), timeoutMs);
  return values.map((v) => (v === null || v === undefined ? null : parsed(v)));
}

/** Redis keys of a tenant's bookkeeping: the entries by expiry, and their sizes (field `*`: the total). */
export function tenantIndexKeys(prefix: string, tenantId: string): [string, string] {
  return [`${prefix}cache:idx:${tenantId}`, `${prefix}cache:sz:${tenantId}`];
}

/**
 * KEYS: the tenant's index (sorted set) and sizes (hash). ARGV: now (unix ms), the bound (bytes),
 * how long the bookkeeping lives (ms), then key, value, ttl (ms) per entry. Returns the entries stored.
 * An entry's size is its key's and value's bytes. Entries evicted here are deleted (their names come
 * from the index, which only this script writes).
 */
export const STORE_SCRIPT = `
local idx, sizes = KEYS[1], KEYS[2]
local now, bound, keep = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local total = tonumber(redis.call('HGET', sizes, '*') or '0')
local function forget(k)
  total = total - tonumber(redis.call('HGET', sizes, k) or '0')
  redis.call('HDEL', sizes, k)
  redis.call('ZREM', idx, k)
end
for _, k in ipairs(redis.call('ZRANGEBYSCORE', idx, '-inf', now, 'LIMIT', 0, 256)) do forget(k) end
local stored = 0
for i = 4, #ARGV, 3 do
  local k, v, ttl = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local size = string.len(k) + string.len(v)
  if size <= bound and ttl > 0 then
    if redis.call('HEXISTS', sizes, k) == 1 then forget(k) end
    while total + size > bound do
      local oldest = redis.call('ZRANGE', idx, 0, 0)
      if #oldest == 0 then total = 0 break end
      forget(oldest[1])
      redis.call('DEL', oldest[1])
    end
    redis.call('SET', k, v, 'PX', ttl)
    redis.call('ZADD', idx, now + ttl, k)
    redis.call('HSET', sizes, k, size)
    total = total + size
    stored = stored + 1
  end
end
if total < 0 then total = 0 end
redis.call('HSET', sizes, '*', total)
-- The bookkeeping outlives every entry it lists: its expiry only moves later.
if redis.call('PTTL', idx) < keep then redis.call('PEXPIRE', idx, keep) end
if redis.call('PTTL', sizes) < keep then redis.call('PEXPIRE', sizes, keep) end
return stored
`;

/** Stores entries under the tenant's bound (one script call). Resolves to how many were stored. */
export async function storeEntries(redis: Redis, prefix: string, tenantId: string, writes: CacheWrite[], maxBytes: number): Promise<number> {
  if (writes.length === 0) return 0;
  const keep = Math.max(...writes.map((w) => w.ttlMs));
  const args: (string | number)[] = [Date.now(), maxBytes, keep];
  for (const w of writes) args.push(w.key, w.value, w.ttlMs);
  return Number(await redis.eval(STORE_SCRIPT, tenantIndexKeys(prefix, tenantId), args.map(String)));
}
