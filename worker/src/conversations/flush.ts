/**
 * The scheduled job's side of conversation audit (docs/audit.md): queued conversations to Postgres
 * (redacted by their tenant's rules, idempotent by request id), and deletion past each tenant's
 * retention.
 */
import { and, inArray, isNotNull, lt, sql } from "drizzle-orm";
import type { Redis } from "@upstash/redis/cloudflare";
import { conversations, tenants } from "../../../schema/tables/index.ts";
import type { Db } from "../platform/db.ts";
import { drain } from "../platform/outbox.ts";
import type { ConversationRecord } from "./capture.ts";

/** Redis list of conversation records not yet in Postgres. */
export function conversationOutboxKey(prefix: string): string {
  return `${prefix}outbox:conversations`;
}

/** What replaces each match of a tenant's redaction rules. */
export const REDACTED = "[REDACTED]";

/** Applies redaction rules (regexes, checked when they were configured) to a body. */
export function redact(text: string | null, rules: RegExp[]): string | null {
  if (text === null) return null;
  let out = text;
  for (const rule of rules) out = out.replace(rule, REDACTED);
  return out;
}

/** Compiles a tenant's rules; one that no longer compiles (set directly in Postgres) redacts the whole body rather than none of it. */
function compile(rules: string[] | null): RegExp[] {
  return (rules ?? []).map((rule) => {
    try {
      return new RegExp(rule, "g");
    } catch {
      return /[\s\S]+/g;
    }
  });
}

/** Writes one batch: each tenant's rules read once, bodies redacted, rows inserted unless already there. */
export async function writeConversationBatch(db: Db, items: ConversationRecord[]): Promise<void> {
  const tenantIds = [...new Set(items.filter((i) => i.requestBody !== null || i.responseBody !== null).map((i) => i.tenantId))];
  const ruleRows = tenantIds.length === 0 ? [] : await db.select({ id: tenants.id, rules: tenants.auditRedactions }).from(tenants).where(inArray(tenants.id, tenantIds));
  const rules = new Map(ruleRows.map((r) => [r.id, compile(r.rules)]));
  const rows = items.map((i) => {
    const tenantRules = rules.get(i.tenantId) ?? [];
    return { ...i, at: new Date(i.at), endedAt: new Date(i.endedAt), requestBody: redact(i.requestBody, tenantRules), responseBody: redact(i.responseBody, tenantRules) };
  });
  await db.insert(conversations).values(rows).onConflictDoNothing({ target: conversations.id });
}

/** Moves queued conversations to Postgres (the scheduled job). Returns how many were written. */
export async function flushConversations(redis: Redis, prefix: string, db: Db): Promise<number> {
  // Bodies are up to 2 MB each: smaller batches than usage's.
  const { consumed } = await drain<ConversationRecord>(redis, conversationOutboxKey(prefix), (items) => writeConversationBatch(db, items), { batchSize: 50 });
  return consumed;
}

/** Deletes conversations older than their tenant's retention (tenants without one keep theirs). Returns how many. */
export async function deleteExpiredConversations(db: Db, now = new Date()): Promise<number> {
  const expired = await db
    .delete(conversations)
    .where(
      inArray(
        conversations.id,
        db
          .select({ id: conversations.id })
          .from(conversations)
          .innerJoin(tenants, sql`${tenants.id} = ${conversations.tenantId}`)
          .where(and(isNotNull(tenants.auditRetentionDays), lt(conversations.at, sql`${now.toISOString()}::timestamptz - make_interval(days => ${tenants.auditRetentionDays})`))),
      ),
    )
    .returning({ id: conversations.id });
  return expired.length;
}
