import type { Redis } from "@upstash/redis/cloudflare";

/**
 * Gateway counters for events that happen when a dependency fails (limits failing open, budgets
 * failing closed). They are counted in the isolate first — Redis may be the thing that is down —
 * and added to a Redis hash the next time a flush succeeds (after a request, and every minute from
 * the scheduled job). `GET /admin/metrics` serves the totals as Prometheus text.
 */

const pending = new Map<string, number>();

/** HELP texts of the counters the gateway keeps. */
export const COUNTERS = {
  switchyard_admissions_total: "Requests admitted, by path: local (from the isolate's capacity leases, no Redis round trip) or redis (waited on one).",
  switchyard_limits_fail_open_total: "Requests admitted without a rate-limit or concurrency check because Redis did not answer in time (label check).",
  switchyard_budgets_fail_closed_total: "Requests refused because budgets could not be checked (Redis unavailable).",
  switchyard_reconciliation_alerts_total: "Reconciliation windows whose drift between engine-counted and metered tokens was above the threshold (label node).",
} as const;

/** A counter name. */
export type CounterName = keyof typeof COUNTERS;

function field(name: CounterName, labels: Record<string, string>): string {
  const rendered = Object.entries(labels)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}="${v}"`)
    .join(",");
  return rendered ? `${name}{${rendered}}` : name;
}

/** Counts one event in this isolate. */
export function countEvent(name: CounterName, labels: Record<string, string> = {}): void {
  const key = field(name, labels);
  pending.set(key, (pending.get(key) ?? 0) + 1);
}

/** Redis hash of the totals. */
export function metricsKey(prefix: string): string {
  return `${prefix}metrics`;
}

/** Adds this isolate's pending counts to Redis; kept for the next try if Redis fails. */
export async function flushCounters(redis: Redis, prefix: string): Promise<void> {
  if (pending.size === 0) return;
  const batch = [...pending];
  pending.clear();
  try {
    const pipe = redis.pipeline();
    for (const [key, n] of batch) pipe.hincrby(metricsKey(prefix), key, n);
    await pipe.exec();
  } catch {
    for (const [key, n] of batch) pending.set(key, (pending.get(key) ?? 0) + n);
  }
}

/**
 * Moves this isolate's pending counts into `batch` (a request's end writes, so they cost no round
 * trip of their own); returns a function that puts them back if the batch fails.
 */
export function appendCounters(batch: ReturnType<Redis["pipeline"]>, prefix: string): () => void {
  if (pending.size === 0) return () => {};
  const taken = [...pending];
  pending.clear();
  for (const [key, n] of taken) batch.hincrby(metricsKey(prefix), key, n);
  return () => {
    for (const [key, n] of taken) pending.set(key, (pending.get(key) ?? 0) + n);
  };
}

/** The totals in Prometheus text format (every known counter, 0 when it never happened). */
export async function renderCounters(redis: Redis, prefix: string): Promise<string> {
  const totals = (await redis.hgetall<Record<string, number>>(metricsKey(prefix))) ?? {};
  const lines: string[] = [];
  for (const [name, help] of Object.entries(COUNTERS) as [CounterName, string][]) {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`);
    const series = Object.entries(totals).filter(([k]) => k === name || k.startsWith(`${name}{`));
    if (series.length === 0) lines.push(`${name} 0`);
    for (const [k, v] of series) lines.push(`${k} ${Number(v)}`);
  }
  return `${lines.join("\n")}\n`;
}
