import type { Redis } from "@upstash/redis/cloudflare";
import type { RedisBatch } from "./types.ts";

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

/** The outcome of a reservation. */
export type Reservation =
  | { ok: true; settle(actual: Cost, batch?: RedisBatch): Promise<void>; release(batch?: RedisBatch): Promise<void> }
  | { ok: false; budget: BudgetEntry | null; reason: "exhausted" | "unavailable" };

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

// Checks every budget first and only then adds to all of them, in one atomic script, so concurrent
// requests can never together pass a budget: a reservation either fits everywhere or nowhere.
// KEYS: the marker, then one counter per budget. ARGV: per budget the limit, the amount to add, and
// a TTL in seconds (0 = none). Returns 0 on success, -1 when the counters are not seeded, else the
// 1-based index of the first budget that does not fit.
const RESERVE = `
if redis.call("EXISTS", KEYS[1]) == 0 then return -1 end
for i = 2, #KEYS do
  local used = tonumber(redis.call("GET", KEYS[i]) or "0")
  local limit = tonumber(ARGV[(i - 2) * 3 + 1])
  local amount = tonumber(ARGV[(i - 2) * 3 + 2])
  if used + amount > limit then return i - 1 end
end
for i = 2, #KEYS do
  redis.call("INCRBY", KEYS[i], ARGV[(i - 2) * 3 + 2])
  local ttl = tonumber(ARGV[(i - 2) * 3 + 3])
  if ttl > 0 and redis.call("TTL", KEYS[i]) < 0 then redis.call("EXPIRE", KEYS[i], ttl) end
end
return 0
`;

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

function amountOf(budget: BudgetEntry, cost: Cost): number {
  return budget.kind === "tokens" ? cost.tokens : budget.kind === "spend" ? cost.spend : cost.requests;
}

/** A human name for a budget, for the 429 message. */
export function describeBudget(budget: BudgetEntry): string {
  const unit = budget.kind === "spend" ? `$${(budget.amount / 1_000_000).toFixed(2)} spend` : `${budget.amount} ${budget.kind}`;
  const period = budget.period === "total" ? "in total" : `per ${budget.period}`;
  return `the ${budget.scope} ${budget.kind === "requests" ? "request quota" : "budget"} (${unit} ${period})`;
}

/**
 * Reserves `max` (the most the request can cost) against every budget atomically. On success the
 * caller settles to the real cost when the response ends (the difference is given back, or charged
 * when the real cost was higher), or releases everything when the request failed. Budgets fail closed: if Redis cannot answer, the request is
 * refused rather than risk overspending (`reason: "unavailable"`), and so do counters that are not
 * seeded (`budgetMarkerKey`).
 */
export async function reserveBudgets(redis: Redis, prefix: string, budgets: BudgetEntry[], max: Cost, now = new Date()): Promise<Reservation> {
  const applicable = budgets.filter((b) => amountOf(b, max) > 0);
  if (applicable.length === 0) return { ok: true, settle: async () => {}, release: async () => {} };
  const counters = applicable.map((b) => budgetCounter(prefix, b, now));
  const args = applicable.flatMap((b, i) => [String(b.amount), String(amountOf(b, max)), String(counters[i]?.ttlSeconds ?? 0)]);
  let result: number;
  try {
    result = Number(await redis.eval(RESERVE, [budgetMarkerKey(prefix), ...counters.map((c) => c.key)], args));
  } catch {
    return { ok: false, budget: null, reason: "unavailable" };
  }
  // Counters not seeded (Redis lost its data, or a new deployment before its first scheduled run).
  if (result === -1) return { ok: false, budget: null, reason: "unavailable" };
  if (result !== 0) return { ok: false, budget: applicable[result - 1] ?? null, reason: "exhausted" };

  let done = false;
  const adjust = async (actual: Cost, batch?: RedisBatch) => {
    if (done) return;
    done = true;
    const pipe = batch ?? redis.pipeline();
    let commands = 0;
    applicable.forEach((b, i) => {
      const delta = amountOf(b, actual) - amountOf(b, max);
      const key = counters[i]?.key;
      if (delta !== 0 && key) {
        pipe.incrby(key, delta);
        commands++;
      }
    });
    if (commands > 0 && !batch) await pipe.exec();
  };
  return {
    ok: true,
    // Settling charges the real cost even above the reservation (pricing at admission is an upper
    // bound, but an engine that produced more must still be paid for): the counter may pass the
    // budget, and the next reservation sees the overrun and is refused.
    settle: (actual, batch) => adjust(actual, batch),
    release: (batch) => adjust({ tokens: 0, spend: 0, requests: 0 }, batch),
  };
}
