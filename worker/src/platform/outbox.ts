import type { Redis } from "@upstash/redis/cloudflare";
import { isDataError } from "./db.ts";

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

/** Redis list of items the consumer refused on their own (poison events), kept for inspection and replay. */
export function deadLetterKey(key: string): string {
  return `${key}:dead`;
}

/** What the dead-letter list holds for one refused item. */
export interface DeadLetter {
  /** The item exactly as it was queued. */
  item: string;
  error: string;
  at: string;
}

/** Moves every dead letter back to the queue (after the cause was fixed); returns how many. */
export async function replayDeadLetters(redis: Redis, key: string): Promise<number> {
  const moved = await redis.eval<string[], number>(REPLAY, [deadLetterKey(key), key], []);
  return Number(moved);
}

const REPLAY = `
local n = 0
while true do
  local raw = redis.call("RPOP", KEYS[1])
  if not raw then return n end
  redis.call("LPUSH", KEYS[2], cjson.decode(raw).item)
  n = n + 1
end
`;

/** Items waiting (queued and in flight): the backlog. */
export async function backlog(redis: Redis, key: string): Promise<number> {
  const [queued, inflight] = await Promise.all([redis.llen(key), redis.llen(`${key}:inflight`)]);
  return queued + inflight;
}

/**
 * Hands batches of at most `batchSize` items to `consume` until the queue is empty or `maxBatches`
 * ran. Only one drain per queue runs at a time (a lock that expires, so a dead run cannot hold it).
 *
 * If `consume` throws, the batch is retried one item at a time, so one poison item cannot hold up
 * everything queued behind it: an item refused for its data (`isPoison`, by default Postgres data
 * and constraint errors) moves to the dead-letter list (`deadLetterKey`, never dropped:
 * replayDeadLetters puts it back). Any other failure (the database is down, say) leaves the batch
 * in flight for the next run and propagates. Items that are not JSON are dead-lettered at once.
 */
export async function drain<T>(
  redis: Redis,
  key: string,
  consume: (items: T[]) => Promise<void>,
  opts: { batchSize?: number; maxBatches?: number; lockMs?: number; isPoison?: (err: unknown) => boolean } = {},
): Promise<{ consumed: number; locked: boolean }> {
  const lockKey = `${key}:lock`;
  const token = crypto.randomUUID();
  const got = await redis.set(lockKey, token, { nx: true, px: opts.lockMs ?? 50_000 });
  if (got !== "OK") return { consumed: 0, locked: true };
  let consumed = 0;
  try {
    for (let i = 0; i < (opts.maxBatches ?? 20); i++) {
      const raw = await redis.eval<string[], unknown[]>(TAKE, [key, `${key}:inflight`], [String(opts.batchSize ?? 500)]);
      if (!Array.isArray(raw) || raw.length === 0) break;
      const { items, poison } = parseItems<T>(raw);
      let dead = poison;
      if (items.length > 0) {
        try {
          await consume(items.map((i) => i.value));
        } catch (err) {
          dead = [...dead, ...(await consumeOneByOne(items, consume, opts.isPoison ?? isDataError, err))];
        }
      }
      // Dead letters are written before the in-flight batch is dropped: a crash in between only
      // duplicates a dead letter, never loses one.
      if (dead.length > 0) await redis.lpush(deadLetterKey(key), ...dead.map((d) => JSON.stringify(d)));
      await redis.del(`${key}:inflight`);
      consumed += items.length - (dead.length - poison.length);
    }
  } finally {
    await redis.eval(UNLOCK, [lockKey], [token]);
  }
  return { consumed, locked: false };
}

interface Parsed<T> {
  raw: string;
  value: T;
}

function parseItems<T>(raw: unknown[]): { items: Parsed<T>[]; poison: DeadLetter[] } {
  const items: Parsed<T>[] = [];
  const poison: DeadLetter[] = [];
  const at = new Date().toISOString();
  for (const entry of raw) {
    // The REST client decodes JSON values itself; strings that are not JSON come back as strings.
    const text = typeof entry === "string" ? entry : JSON.stringify(entry);
    if (typeof entry !== "string") {
      items.push({ raw: text, value: entry as T });
      continue;
    }
    try {
      items.push({ raw: text, value: JSON.parse(text) as T });
    } catch (err) {
      poison.push({ item: text, error: `not JSON: ${String(err)}`, at });
    }
  }
  return { items, poison };
}

/** Consumes items one at a time; returns the poison ones, and throws `batchError` on any other failure. */
async function consumeOneByOne<T>(items: Parsed<T>[], consume: (items: T[]) => Promise<void>, isPoison: (err: unknown) => boolean, batchError: unknown): Promise<DeadLetter[]> {
  const failed: DeadLetter[] = [];
  for (const item of items) {
    try {
      await consume([item.value]);
    } catch (err) {
      if (!isPoison(err)) throw batchError;
      failed.push({ item: item.raw, error: describe(err), at: new Date().toISOString() });
    }
  }
  return failed;
}

/** The error and its causes, which carry Postgres's own message. */
function describe(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) parts.push(messageOf(e));
  return parts.join(": ").slice(0, 2000);
}

/** An error's message; a thrown plain object as JSON rather than "[object Object]". */
function messageOf(e: unknown): string {
  if (e instanceof Error) return e.message;
  if (typeof e === "object" && e !== null) {
    try {
      return JSON.stringify(e);
    } catch {
      return Object.prototype.toString.call(e);
    }
  }
  return String(e);
}
