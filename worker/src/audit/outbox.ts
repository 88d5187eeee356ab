import type { Redis } from "@upstash/redis/cloudflare";
import { auditLogs } from "../../../schema/tables/index.ts";
import type { Db } from "../platform/db.ts";

/** An audit row waiting in Redis to be written to Postgres. */
export type AuditEvent = typeof auditLogs.$inferInsert & { id: string };

/** Redis list of audit events not yet in Postgres (newest at the head). */
export function auditOutboxKey(prefix: string): string {
  return `${prefix}outbox:audit`;
}

/**
 * Queues an audit event (off the response path: callers hand this to waitUntil). The hot path pays
 * one Redis LPUSH; the scheduled flush moves events to Postgres in batches.
 */
export async function queueAudit(redis: Redis, prefix: string, event: Omit<AuditEvent, "id" | "at">): Promise<void> {
  const row: AuditEvent = { id: `aud_${crypto.randomUUID().replaceAll("-", "")}`, at: new Date(), ...event };
  await redis.lpush(auditOutboxKey(prefix), JSON.stringify(row));
}

// Takes the oldest N entries off the tail atomically, so two flushes never take the same events.
const TAKE_OLDEST = `
local items = redis.call("LRANGE", KEYS[1], -tonumber(ARGV[1]), -1)
if #items > 0 then redis.call("LTRIM", KEYS[1], 0, -#items - 1) end
return items
`;

/**
 * Moves up to `batch` queued events to `audit_logs`. Inserts are idempotent by id; if the insert
 * fails the events go back to the tail of the list, so they are retried by the next run
 * (at-least-once delivery, exactly-once rows). Returns how many were written.
 */
export async function flushAuditOutbox(redis: Redis, prefix: string, db: Db, batch = 500): Promise<number> {
  const key = auditOutboxKey(prefix);
  const raw = (await redis.eval(TAKE_OLDEST, [key], [String(batch)])) as unknown[];
  if (!Array.isArray(raw) || raw.length === 0) return 0;
  const rows = raw.map((item) => {
    const parsed = (typeof item === "string" ? JSON.parse(item) : item) as AuditEvent & { at: string };
    return { ...parsed, at: new Date(parsed.at) };
  });
  try {
    await db.insert(auditLogs).values(rows).onConflictDoNothing({ target: auditLogs.id });
  } catch (err) {
    // Back to the tail (oldest end), in their original order, for the next run.
    await redis.rpush(key, ...raw.map((item) => (typeof item === "string" ? item : JSON.stringify(item))).reverse());
    throw err;
  }
  return rows.length;
}
