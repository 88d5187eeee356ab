import type { Redis } from "@upstash/redis/cloudflare";
import { auditLogs } from "../../../schema/tables/index.ts";
import type { Db } from "../platform/db.ts";
import { drain, enqueue } from "../platform/outbox.ts";

/** An audit row waiting in Redis to be written to Postgres. */
export type AuditEvent = typeof auditLogs.$inferInsert & { id: string };

/** Redis list of audit events not yet in Postgres. */
export function auditOutboxKey(prefix: string): string {
  return `${prefix}outbox:audit`;
}

/**
 * Queues an audit event (off the response path: callers hand this to waitUntil). The hot path pays
 * one Redis LPUSH; the scheduled job moves events to Postgres in batches (platform/outbox.ts).
 */
export async function queueAudit(redis: Redis, prefix: string, event: Omit<AuditEvent, "id" | "at">): Promise<void> {
  await enqueue(redis, auditOutboxKey(prefix), auditEvent(event));
}

/** Gives an audit event its id and time (now). */
export function auditEvent(event: Omit<AuditEvent, "id" | "at">): AuditEvent {
  return { id: `aud_${crypto.randomUUID().replaceAll("-", "")}`, at: new Date(), ...event };
}

/** Moves queued audit events to `audit_logs` (idempotent by id). Returns how many were written. */
export async function flushAuditOutbox(redis: Redis, prefix: string, db: Db): Promise<number> {
  const { consumed } = await drain<AuditEvent & { at: string }>(redis, auditOutboxKey(prefix), async (items) => {
    const rows = items.map((item) => ({ ...item, at: new Date(item.at) }));
    await db.insert(auditLogs).values(rows).onConflictDoNothing({ target: auditLogs.id });
  });
  return consumed;
}
