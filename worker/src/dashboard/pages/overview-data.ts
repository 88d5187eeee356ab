/**
 * The overview's arithmetic, apart from its markup: the ranges it offers and their windows, the
 * admin API answers it reads, and their bucket series on one continuous time axis.
 */
import type { ReportRow, ReportTotals } from "../../usage/report.ts";
import type { StatsJson } from "../../usage/stats.ts";

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

/** The ranges the overview offers: how far back, and the bucket. */
export const RANGES = {
  "24h": { label: "Last 24 hours, by hour", bucket: "hour", count: 24 },
  "7d": { label: "Last 7 days, by day", bucket: "day", count: 7 },
  "30d": { label: "Last 30 days, by day", bucket: "day", count: 30 },
} as const;
/** One of RANGES. */
export type RangeKey = keyof typeof RANGES;

/** What the top keys and models are ranked by. */
export const RANKS = { tokens: "Tokens", cost: "Cost" } as const;
/** One of RANKS. */
export type RankKey = keyof typeof RANKS;

/** The overview's choices, from its address (unknown values fall back to the defaults). */
export interface OverviewQuery {
  range: RangeKey;
  /** The tenant asked for ("" = the session's scope: every tenant for the operator). */
  tenantId: string;
  rank: RankKey;
}

/** Reads the overview's query parameters. */
export function readOverviewQuery(query: Record<string, string>): OverviewQuery {
  const range = query.range !== undefined && query.range in RANGES ? (query.range as RangeKey) : "24h";
  const rank = query.rank !== undefined && query.rank in RANKS ? (query.rank as RankKey) : "tokens";
  return { range, tenantId: (query.tenant_id ?? "").trim(), rank };
}

/**
 * The range's window: whole buckets ending with the current one (the current hour for hours, today
 * in UTC for days), so every bucket on the axis is a full period but the last.
 */
export function rangeWindow(range: RangeKey, now = Date.now()): { start: Date; end: Date; bucket: "hour" | "day" } {
  const r = RANGES[range];
  const step = r.bucket === "hour" ? HOUR_MS : DAY_MS;
  const end = (Math.floor(now / step) + 1) * step;
  return { start: new Date(end - r.count * step), end: new Date(end), bucket: r.bucket };
}

/** The answer of `GET /admin/usage` (JSON). */
export interface UsageReportJson {
  object: "usage.report";
  tenant_id: string | null;
  start: string;
  end: string;
  bucket: "hour" | "day";
  data: ReportRow[];
  totals: ReportTotals;
}

/** The series the charts draw, on the stats answer's buckets (every bucket of the window). */
export interface OverviewSeries {
  buckets: string[];
  requests: number[];
  prompt: number[];
  completion: number[];
  /** Dollars (the chart's axis), not micro-dollars. */
  costUsd: number[];
  /** Percent; null where a bucket had no requests (a gap, not a zero). */
  errorPct: (number | null)[];
  p95Latency: (number | null)[];
  p95Ttft: (number | null)[];
}

/**
 * Lines up the usage report (sums: zero where a bucket has no rows) with the statistics (every
 * bucket; ratios and percentiles null where nothing qualifies), so the x axis is continuous.
 */
export function overviewSeries(report: UsageReportJson, stats: StatsJson): OverviewSeries {
  const buckets = stats.data.map((s) => s.period_start);
  const sums = new Map(report.data.map((r) => [r.period_start, r]));
  const pick = (f: (r: ReportRow) => number) => buckets.map((b) => {
    const r = sums.get(b);
    return r ? f(r) : 0;
  });
  return {
    buckets,
    requests: pick((r) => r.requests),
    prompt: pick((r) => r.prompt_tokens),
    completion: pick((r) => r.completion_tokens),
    costUsd: pick((r) => r.cost_micros / 1e6),
    errorPct: stats.data.map((s) => (s.error_rate === null ? null : s.error_rate * 100)),
    p95Latency: stats.data.map((s) => s.p95_latency_ms),
    p95Ttft: stats.data.map((s) => s.p95_ttft_ms),
  };
}

/** A key's or a model's sums over the range. */
export interface TopRow {
  id: string;
  requests: number;
  prompt: number;
  completion: number;
  tokens: number;
  costMicros: number;
}

/** The `limit` largest groups of a grouped report by `rank` (ties: the other measure, then the id). */
export function topGroups(rows: ReportRow[], field: "api_key_id" | "model", rank: RankKey, limit = 10): TopRow[] {
  const sums = new Map<string, TopRow>();
  for (const r of rows) {
    const id = r[field] ?? "";
    const s = sums.get(id) ?? { id, requests: 0, prompt: 0, completion: 0, tokens: 0, costMicros: 0 };
    s.requests += r.requests;
    s.prompt += r.prompt_tokens;
    s.completion += r.completion_tokens;
    s.tokens += r.total_tokens;
    s.costMicros += r.cost_micros;
    sums.set(id, s);
  }
  const primary = (t: TopRow) => (rank === "tokens" ? t.tokens : t.costMicros);
  const secondary = (t: TopRow) => (rank === "tokens" ? t.costMicros : t.tokens);
  return [...sums.values()].sort((a, b) => primary(b) - primary(a) || secondary(b) - secondary(a) || a.id.localeCompare(b.id)).slice(0, limit);
}

/** A share as a percentage with up to two decimals ("20%", "33.33%"); "–" when undefined. */
export function percent(share: number | null): string {
  return share === null ? "–" : `${(share * 100).toLocaleString("en-US", { maximumFractionDigits: 2 })}%`;
}

/** Milliseconds, with separators ("1,900 ms"); "–" when unknown. */
export function millis(ms: number | null): string {
  return ms === null ? "–" : `${ms.toLocaleString("en-US")} ms`;
}
