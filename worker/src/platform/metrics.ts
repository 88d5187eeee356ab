import type { Redis } from "@upstash/redis/cloudflare";
import { COUNTERS, HISTOGRAMS, type CounterName } from "./metric-names.ts";

export { COUNTERS, HISTOGRAMS, type CounterName };

/**
 * The gateway's metrics (docs/operations.md#metrics). Counters and histograms are counted in the
 * isolate first — Redis may be the thing that is down, and the request path must not wait on it —
 * and added to one Redis hash (HINCRBY, HINCRBYFLOAT for sums) with the next write that goes out
 * anyway: every request's end batch (metering/request-end.ts), a few admin and node routes, and the
 * scheduled job every minute. `GET /admin/metrics` serves the totals, summed over every isolate and
 * region, as Prometheus text. An isolate that dies loses what it counted since its last flush: at
 * most the requests that ended after its last end batch (a few milliseconds' worth under load), and
 * whatever a failed flush was holding when it died.
 */

const pending = new Map<string, number>();
/** Histogram sums (not whole numbers), added with HINCRBYFLOAT. */
const pendingSums = new Map<string, number>();
/** The latest exemplar per histogram bucket (a bucket field → `{trace_id} value timestamp`), written with HSET: the last one wins. */
const pendingExemplars = new Map<string, string>();

/** A histogram name. */
export type HistogramName = keyof typeof HISTOGRAMS;

/** A label value as Prometheus' text format writes it (backslash, quote and newline escaped). */
function escape(value: string): string {
  return /["\\\n]/.test(value) ? value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n") : value;
}

/** `k1="v1",k2="v2"` in the labels' alphabetical order ("" without labels). */
function labelText(labels: Record<string, string>): string {
  const keys = Object.keys(labels);
  if (keys.length === 0) return "";
  if (keys.length > 1) keys.sort();
  let out = "";
  for (const k of keys) out += `${out ? "," : ""}${k}="${escape(labels[k] ?? "")}"`;
  return out;
}

function bump(key: string, n = 1): void {
  pending.set(key, (pending.get(key) ?? 0) + n);
}

/** Counts one event (or `n`) in this isolate. */
export function countEvent(name: CounterName, labels: Record<string, string> = {}, n = 1): void {
  const text = labelText(labels);
  bump(text ? `${name}{${text}}` : name, n);
}

/**
 * Counts an API request as answered. The labels are built in their alphabetical order directly:
 * this runs on every request.
 */
export function countRequest(route: string, model: string, region: string, node: string, status: number): void {
  bump(`switchyard_requests_total{model="${escape(model)}",node="${escape(node)}",region="${escape(region)}",route="${escape(route)}",status="${status}"}`);
}

/**
 * Records one observation of a histogram in this isolate (flushed with the counters). With the
 * trace id of an exported trace, the observation becomes its bucket's exemplar (OpenMetrics).
 */
export function observe(name: HistogramName, value: number, labels: Record<string, string> = {}, traceId: string | null = null): void {
  if (!Number.isFinite(value)) return;
  const text = labelText(labels);
  const head = `${name}_bucket{${text ? `${text},` : ""}le="`;
  let first: string | null = null;
  for (const le of HISTOGRAMS[name].buckets) {
    if (value > le) continue;
    const field = `${head}${le}"}`;
    first ??= field;
    bump(field);
  }
  bump(`${head}+Inf"}`);
  if (traceId !== null) pendingExemplars.set(first ?? `${head}+Inf"}`, `{trace_id="${escape(traceId)}"} ${value} ${(Date.now() / 1000).toFixed(3)}`);
  const series = text ? `{${text}}` : "";
  bump(`${name}_count${series}`);
  pendingSums.set(`${name}_sum${series}`, (pendingSums.get(`${name}_sum${series}`) ?? 0) + value);
}

/** Redis hash of the totals. */
export function metricsKey(prefix: string): string {
  return `${prefix}metrics`;
}

/** Redis hash of the histograms' latest exemplars (bucket field → exemplar text). */
export function exemplarsKey(prefix: string): string {
  return `${prefix}metrics:exemplars`;
}

/** Adds this isolate's pending counts to Redis; kept for the next try if Redis fails. */
export async function flushCounters(redis: Redis, prefix: string): Promise<void> {
  if (pending.size === 0 && pendingSums.size === 0 && pendingExemplars.size === 0) return;
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
  if (pending.size === 0 && pendingSums.size === 0 && pendingExemplars.size === 0) return () => {};
  const taken = [...pending];
  const sums = [...pendingSums];
  pending.clear();
  pendingSums.clear();
  for (const [key, n] of taken) batch.hincrby(metricsKey(prefix), key, n);
  for (const [key, x] of sums) batch.hincrbyfloat(metricsKey(prefix), key, x);
  // Exemplars are samples, not totals: a failed batch drops them rather than keeping stale ones.
  if (pendingExemplars.size > 0) {
    batch.hset(exemplarsKey(prefix), Object.fromEntries(pendingExemplars));
    pendingExemplars.clear();
  }
  return () => {
    for (const [key, n] of taken) bump(key, n);
    for (const [key, x] of sums) pendingSums.set(key, (pendingSums.get(key) ?? 0) + x);
  };
}

/** The label part of a stored histogram field (`route="chat"` of `…_bucket{route="chat",le="0.1"}`). */
function seriesOfBucket(field: string, name: string): string {
  const inner = field.slice(`${name}_bucket{`.length, -1);
  const le = inner.lastIndexOf('le="');
  return inner.slice(0, Math.max(0, le - 1));
}

/** The text formats a scrape can ask for: Prometheus' 0.0.4, or OpenMetrics 1.0 (which carries exemplars). */
export type MetricsFormat = "prometheus" | "openmetrics";

/**
 * The totals in Prometheus text format (a counter that never happened and has no labels shows 0).
 * In OpenMetrics a counter's family is named without `_total` and histogram buckets carry their
 * latest exemplar (the trace id of an exported trace that fell in them).
 */
export async function renderCounters(redis: Redis, prefix: string, format: MetricsFormat = "prometheus"): Promise<string> {
  const [stored, exemplars] = await Promise.all([
    redis.hgetall<Record<string, number>>(metricsKey(prefix)),
    format === "openmetrics" ? redis.hgetall<Record<string, string>>(exemplarsKey(prefix)) : Promise.resolve(null),
  ]);
  const totals = stored ?? {};
  const fields = Object.keys(totals).sort();
  const lines: string[] = [];
  for (const [name, help] of Object.entries(COUNTERS) as [CounterName, string][]) {
    const family = format === "openmetrics" ? name.replace(/_total$/, "") : name;
    lines.push(`# HELP ${family} ${help}`, `# TYPE ${family} counter`);
    const series = fields.filter((k) => k === name || k.startsWith(`${name}{`));
    if (series.length === 0) lines.push(`${name} 0`);
    for (const k of series) lines.push(`${k} ${Number(totals[k])}`);
  }
  for (const [name, { help, buckets }] of Object.entries(HISTOGRAMS) as [HistogramName, (typeof HISTOGRAMS)[HistogramName]][]) {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} histogram`);
    const series = new Set(fields.filter((k) => k.startsWith(`${name}_bucket{`)).map((k) => seriesOfBucket(k, name)));
    // An unlabelled histogram shows its zeros before the first observation.
    if (series.size === 0) series.add("");
    for (const s of series) {
      const head = `${name}_bucket{${s ? `${s},` : ""}le="`;
      for (const le of [...buckets.map(String), "+Inf"]) {
        const field = `${head}${le}"}`;
        const exemplar = exemplars?.[field];
        lines.push(`${field} ${Number(totals[field] ?? 0)}${exemplar ? ` # ${exemplar}` : ""}`);
      }
      const tail = s ? `{${s}}` : "";
      lines.push(`${name}_sum${tail} ${Number(totals[`${name}_sum${tail}`] ?? 0)}`, `${name}_count${tail} ${Number(totals[`${name}_count${tail}`] ?? 0)}`);
    }
  }
  return `${lines.join("\n")}\n`;
}
