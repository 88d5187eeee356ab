import type { Redis } from "@upstash/redis/cloudflare";

/**
 * Gateway counters for events that happen when a dependency fails (limits failing open, budgets
 * failing closed). They are counted in the isolate first — Redis may be the thing that is down —
 * and added to a Redis hash the next time a flush succeeds (after a request, and every minute from
 * the scheduled job). `GET /admin/metrics` serves the totals as Prometheus text.
 */

const pending = new Map<string, number>();
/** Histogram sums (not whole numbers), added with HINCRBYFLOAT. */
const pendingSums = new Map<string, number>();

/** HELP texts of the counters the gateway keeps. */
export const COUNTERS = {
  switchyard_admissions_total: "Requests admitted, by path: local (from the isolate's capacity leases, no Redis round trip) or redis (waited on one).",
  switchyard_limits_fail_open_total: "Requests admitted without a rate-limit or concurrency check because Redis did not answer in time (label check).",
  switchyard_budgets_fail_closed_total: "Requests refused because budgets could not be checked (Redis unavailable).",
  switchyard_reconciliation_alerts_total: "Reconciliation windows whose drift between engine-counted and metered tokens was above the threshold (label node).",
} as const;

const MIB = 1024 * 1024;
const SIZE_BUCKETS = [64 * 1024, 256 * 1024, MIB, 4 * MIB, 8 * MIB, 16 * MIB, 32 * MIB, 64 * MIB];

/** Histograms the gateway keeps (cumulative buckets, as Prometheus expects), with their bucket bounds. */
export const HISTOGRAMS = {
  switchyard_fedattn_sync_duration_seconds: {
    help: "Coordinator time per federated-attention sync: from the aggregate call reaching the gateway to the aggregate ready to send, less any wait for other participants (docs/fedattn.md).",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  },
  switchyard_fedattn_contribution_size_bytes: { help: "Size of each federated-attention contribution received (header and K and V tensors).", buckets: SIZE_BUCKETS },
  switchyard_fedattn_aggregate_size_bytes: { help: "Size of each federated-attention aggregate computed (one block range).", buckets: SIZE_BUCKETS },
} as const;

/** A histogram name. */
export type HistogramName = keyof typeof HISTOGRAMS;

/** Records one observation of a histogram in this isolate (flushed with the counters). */
export function observe(name: HistogramName, value: number): void {
  if (!Number.isFinite(value)) return;
  for (const le of HISTOGRAMS[name].buckets) {
    if (value <= le) pending.set(`${name}_bucket{le="${le}"}`, (pending.get(`${name}_bucket{le="${le}"}`) ?? 0) + 1);
  }
  pending.set(`${name}_bucket{le="+Inf"}`, (pending.get(`${name}_bucket{le="+Inf"}`) ?? 0) + 1);
  pending.set(`${name}_count`, (pending.get(`${name}_count`) ?? 0) + 1);
  pendingSums.set(`${name}_sum`, (pendingSums.get(`${name}_sum`) ?? 0) + value);
}

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
  if (pending.size === 0 && pendingSums.size === 0) return;
  const pipe = redis.pipeline();
  const restore = appendCounters(pipe, prefix);
  try {
    await pipe.exec();
  } catch {
    restore();
  }
}

/**
 * Moves this isolate's pending counts into `batch` (a request's end writes, so they cost no round
 * trip of their own); returns a function that puts them back if the batch fails.
 */
export function appendCounters(batch: ReturnType<Redis["pipeline"]>, prefix: string): () => void {
  if (pending.size === 0 && pendingSums.size === 0) return () => {};
  const taken = [...pending];
  const sums = [...pendingSums];
  pending.clear();
  pendingSums.clear();
  for (const [key, n] of taken) batch.hincrby(metricsKey(prefix), key, n);
  for (const [key, x] of sums) batch.hincrbyfloat(metricsKey(prefix), key, x);
  return () => {
    for (const [key, n] of taken) pending.set(key, (pending.get(key) ?? 0) + n);
    for (const [key, x] of sums) pendingSums.set(key, (pendingSums.get(key) ?? 0) + x);
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
  for (const [name, { help, buckets }] of Object.entries(HISTOGRAMS) as [HistogramName, (typeof HISTOGRAMS)[HistogramName]][]) {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} histogram`);
    for (const le of [...buckets.map(String), "+Inf"]) lines.push(`${name}_bucket{le="${le}"} ${Number(totals[`${name}_bucket{le="${le}"}`] ?? 0)}`);
    lines.push(`${name}_sum ${Number(totals[`${name}_sum`] ?? 0)}`, `${name}_count ${Number(totals[`${name}_count`] ?? 0)}`);
  }
  return `${lines.join("\n")}\n`;
}
