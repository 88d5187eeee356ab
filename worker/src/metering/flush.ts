import { sql } from "drizzle-orm";
import type { Redis } from "@upstash/redis/cloudflare";
import { usageHourly, usageRecords } from "../../../schema/tables/index.ts";
import type { Db } from "../platform/db.ts";
import { drain } from "../platform/outbox.ts";
import { applyCredits } from "./credits.ts";
import type { UsageRow } from "./record.ts";

/** Redis list of usage events not yet in Postgres. */
export function usageOutboxKey(prefix: string): string {
  return `${prefix}outbox:usage`;
}

type QueuedRow = Omit<UsageRow, "at"> & { at: string };

function hourOf(at: Date): Date {
  return new Date(Math.floor(at.getTime() / 3_600_000) * 3_600_000);
}

/**
 * Writes one batch: the records (idempotent by request id) and, in the same transaction, the hourly
 * rollups of exactly the records this transaction inserted, so a batch delivered twice adds nothing
 * the second time. The inserted records' costs are drawn from the tenants' credits first
 * (credits.ts), in the same transaction.
 */
export async function writeUsageBatch(db: Db, queued: QueuedRow[]): Promise<void> {
  const rows: UsageRow[] = queued.map((r) => ({ ...r, at: new Date(r.at) }));
  await db.transaction(async (tx) => {
    const inserted = await tx.insert(usageRecords).values(rows).onConflictDoNothing({ target: usageRecords.id }).returning();
    const credits = await applyCredits(tx, inserted);
    const groups = new Map<string, typeof usageHourly.$inferInsert>();
    for (const r of inserted) {
      const hour = hourOf(r.at);
      const id = [hour.toISOString(), r.tenantId, r.environmentId, r.apiKeyId, r.model].join("|");
      const g = groups.get(id) ?? { hour, tenantId: r.tenantId, environmentId: r.environmentId, apiKeyId: r.apiKeyId, model: r.model, requests: 0, promptTokens: 0, completionTokens: 0, cachedPromptTokens: 0, audioMs: 0, cacheHits: 0, costMicros: 0, creditMicros: 0 };
      g.requests = (g.requests ?? 0) + 1;
      g.promptTokens = (g.promptTokens ?? 0) + r.promptTokens;
      g.completionTokens = (g.completionTokens ?? 0) + r.completionTokens;
      g.cachedPromptTokens = (g.cachedPromptTokens ?? 0) + r.cachedPromptTokens;
      g.audioMs = (g.audioMs ?? 0) + r.audioMs;
      g.cacheHits = (g.cacheHits ?? 0) + (r.cacheHit ? 1 : 0);
      g.costMicros = (g.costMicros ?? 0) + r.costMicros;
      g.creditMicros = (g.creditMicros ?? 0) + (credits.get(r.id) ?? 0);
      groups.set(id, g);
    }
    if (groups.size === 0) return;
    await tx
      .insert(usageHourly)
      .values([...groups.values()])
      .onConflictDoUpdate({
        target: [usageHourly.hour, usageHourly.tenantId, usageHourly.environmentId, usageHourly.apiKeyId, usageHourly.model],
        set: {
          requests: sql`${usageHourly.requests} + excluded.requests`,
          promptTokens: sql`${usageHourly.promptTokens} + excluded.prompt_tokens`,
          completionTokens: sql`${usageHourly.completionTokens} + excluded.completion_tokens`,
          cachedPromptTokens: sql`${usageHourly.cachedPromptTokens} + excluded.cached_prompt_tokens`,
          audioMs: sql`${usageHourly.audioMs} + excluded.audio_ms`,
          cacheHits: sql`${usageHourly.cacheHits} + excluded.cache_hits`,
          costMicros: sql`${usageHourly.costMicros} + excluded.cost_micros`,
          creditMicros: sql`${usageHourly.creditMicros} + excluded.credit_micros`,
        },
      });
  });
}

/** Moves queued usage events to Postgres (the scheduled job). Returns how many were written. */
export async function flushUsage(redis: Redis, prefix: string, db: Db): Promise<number> {
  const { consumed } = await drain<QueuedRow>(redis, usageOutboxKey(prefix), (items) => writeUsageBatch(db, items));
  return consumed;
}
