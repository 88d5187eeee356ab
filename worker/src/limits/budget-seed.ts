import type { Redis } from "@upstash/redis/cloudflare";
import { and, eq, gt, gte, sql, type SQL } from "drizzle-orm";
import { budgets, usageRecords } from "../../../schema/tables/index.ts";
import type { Db } from "../platform/db.ts";
import { budgetCounter, budgetMarkerKey, type BudgetEntry } from "./budgets.ts";

/** When the budget's current period began (unix ms; 0 for a total budget). */
function periodStart(budget: Pick<BudgetEntry, "period">, now: Date): number {
  if (budget.period === "total") return 0;
  const y = now.getUTCFullYear();
  const m = now.getUTCMonth();
  return budget.period === "day" ? Date.UTC(y, m, now.getUTCDate()) : Date.UTC(y, m, 1);
}

function scopeFilter(budget: Pick<BudgetEntry, "scope" | "scopeId">): SQL {
  if (budget.scope === "tenant") return eq(usageRecords.tenantId, budget.scopeId);
  if (budget.scope === "environment") return eq(usageRecords.environmentId, budget.scopeId);
  return eq(usageRecords.apiKeyId, budget.scopeId);
}

/**
 * Rebuilds every budget counter of the current period from `usage_records` and then writes the
 * marker that lets reservations trust them (budgets.ts `budgetMarkerKey`), when the marker is
 * missing: Redis lost its data, or this is a new deployment. A no-op (one EXISTS) otherwise.
 * Usage counts as the request's end settles it: tokens are prompt + completion, spend the cost, and
 * a request that produced no token is not counted. Usage from before a budget was created does not
 * count against it, as with a live counter. Called by the scheduled job after the usage flush, so the
 * records include everything Redis still held. Returns how many budgets were seeded, or null.
 */
export async function reseedBudgetCounters(db: Db, redis: Redis, prefix: string, now = new Date()): Promise<number | null> {
  if ((await redis.exists(budgetMarkerKey(prefix))) === 1) return null;
  const rows = await db.select().from(budgets);
  const tokens = sql<number>`coalesce(sum(${usageRecords.promptTokens} + ${usageRecords.completionTokens}), 0)`;
  const pipe = redis.pipeline();
  for (const row of rows) {
    const budget: BudgetEntry = { id: row.id, scope: row.scope, scopeId: row.scopeId, kind: row.kind, period: row.period, amount: row.amount };
    const since = new Date(Math.max(periodStart(budget, now), row.createdAt.getTime()));
    const [used] = await db
      .select({
        tokens,
        spend: sql<number>`coalesce(sum(${usageRecords.costMicros}), 0)`,
        requests: sql<number>`count(*)`,
      })
      .from(usageRecords)
      .where(and(scopeFilter(budget), gte(usageRecords.at, since), gt(sql`${usageRecords.promptTokens} + ${usageRecords.completionTokens}`, 0)));
    const value = Number(budget.kind === "tokens" ? used?.tokens : budget.kind === "spend" ? used?.spend : used?.requests) || 0;
    const counter = budgetCounter(prefix, budget, now);
    if (counter.ttlSeconds > 0) pipe.set(counter.key, value, { ex: counter.ttlSeconds });
    else pipe.set(counter.key, value);
    // The counter now holds only recorded usage, so no lease may still count in it: an isolate whose
    // lease record is gone counts its requests in flight again when it returns it (lease-scripts.ts).
    pipe.del(`${counter.key}:lease`);
  }
  pipe.set(budgetMarkerKey(prefix), now.getTime());
  await pipe.exec();
  return rows.length;
}
