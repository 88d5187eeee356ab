import type { Redis } from "@upstash/redis/cloudflare";

/**
 * Durable queues in Redis for work that leaves the request path (usage events, audit rows) and is
 * written to Postgres by the scheduled job. Delivery is at least once: a batch moves to an
 * `:inflight` list and is deleted only after the consumer committed it, so a flush that dies at any
 * point leaves the batch for the next run; consumers make their writes idempotent (by id), which
 * turns that into exactly-once rows.
 */

/** Adds one item (off the response path: hand the promise to waitUntil). */
export async function enqueue(redis: Redis, key: string, item: unknown): Promise<void> {
  await redis.lpush(key, JSON.stringify(item));
}

// Moves up to N of the oldest items to the in-flight list and returns everything in flight (including
// what a crashed run left there).
const TAKE = `
local items = redis.call("LRANGE", KEYS[1], -tonumber(ARGV[1]), -1)
if #items > 0 then
  redis.call("LTRIM", KEYS[1], 0, -#items - 1)
  redis.call("RPUSH", KEYS[2], unpack(items))
end
return redis.call("LRANGE", KEYS[2], 0, -1)
`;

const UNLOCK = `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`;

/** Items waiting (queued and in flight): the backlog. */
export async function backlog(redis: Redis, key: string): Promise<number> {
  const [queued, inflight] = await Promise.all([redis.llen(key), redis.llen(`${key}:inflight`)]);
  return queued + inflight;
}

/**
 * Hands batches of at most `batchSize` items to `consume` until the queue is empty or `maxBatches`
 * ran. Only one drain per queue runs at a time (a lock that expires, so a dead run cannot hold it).
 * If `consume` throws, the batch stays in flight for the next run and the error propagates.
 */
export async function drain<T>(
  redis: Redis,
  key: string,
  consume: (items: T[]) => Promise<void>,
  opts: { batchSize?: number; maxBatches?: number; lockMs?: number } = {},
): Promise<{ consumed: number; locked: boolean }> {
  const lockKey = `${key}:lock`;
  const token = crypto.randomUUID();
  const got = await redis.set(lockKey, token, { nx: true, px: opts.lockMs ?? 50_000 });
  if (got !== "OK") return { consumed: 0, locked: true };
  let consumed = 0;
  try {
    for (let i = 0; i < (opts.maxBatches ?? 20); i++) {
      const raw = (await redis.eval(TAKE, [key, `${key}:inflight`], [String(opts.batchSize ?? 500)])) as unknown[];
      if (!Array.isArray(raw) || raw.length === 0) break;
      const items = raw.map((item) => (typeof item === "string" ? JSON.parse(item) : item) as T);
      await consume(items);
      await redis.del(`${key}:inflight`);
      consumed += items.length;
    }
  } finally {
    await redis.eval(UNLOCK, [lockKey], [token]);
  }
  return { consumed, locked: false };
}
