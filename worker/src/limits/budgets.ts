/** A budget or quota as the hot path needs it (from the `budgets` table, cached with the key). */
export interface BudgetEntry {
  id: string;
  scope: "tenant" | "environment" | "key";
  scopeId: string;
  kind: "tokens" | "spend" | "requests";
  period: "day" | "month" | "total";
  /** Tokens, micro-USD or requests. */
  amount: number;
}

/** What one request may cost at most, and what it cost in the end. */
export interface Cost {
  tokens: number;
  /** Micro-USD. */
  spend: number;
  requests: number;
}

/**
 * Redis key whose presence says the budget counters can be trusted. A counter that is missing
 * normally means "nothing used yet this period"; after Redis lost its data it would mean the same
 * and let a tenant spend its budget again. So the counters count only while this marker exists: the
 * scheduled job writes it after (re)seeding every counter from `usage_records` (budget-seed.ts), and
 * until then reservations fail closed like an unreachable Redis.
 */
export function budgetMarkerKey(prefix: string): string {
  return `${prefix}budgets:seeded`;
}

function pad(n: number): string {
  return String(n).padStart(2, "0");
}

/** The counter key of a budget in the period that contains `now`, and how long the key must live. */
export function budgetCounter(prefix: string, budget: BudgetEntry, now: Date): { key: string; ttlSeconds: number } {
  const y = now.getUTCFullYear();
  const m = now.getUTCMonth();
  const d = now.getUTCDate();
  if (budget.period === "total") return { key: `${prefix}budget:${budget.id}:total`, ttlSeconds: 0 };
  const end = budget.period === "day" ? Date.UTC(y, m, d + 1) : Date.UTC(y, m + 1, 1);
  const label = budget.period === "day" ? `${y}-${pad(m + 1)}-${pad(d)}` : `${y}-${pad(m + 1)}`;
  // Kept a day past the period's end so late settlements still land on the right counter.
  return { key: `${prefix}budget:${budget.id}:${label}`, ttlSeconds: Math.ceil((end - now.getTime()) / 1000) + 86_400 };
}

/** A human name for a budget, for the 429 message. */
export function describeBudget(budget: BudgetEntry): string {
  const unit = budget.kind === "spend" ? `$${(budget.amount / 1_000_000).toFixed(2)} spend` : `${budget.amount} ${budget.kind}`;
  const period = budget.period === "total" ? "in total" : `per ${budget.period}`;
  return `the ${budget.scope} ${budget.kind === "requests" ? "request quota" : "budget"} (${unit} ${period})`;
}
