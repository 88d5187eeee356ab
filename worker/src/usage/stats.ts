/**
 * Request statistics per hour or day from `usage_records` (the rollups carry sums only, and a
 * percentile cannot be summed): requests, errors, error rate, p95 latency and p95 time to first
 * token. Read by the dashboard's overview through `GET /admin/usage/stats`.
 *
 * What counts:
 * - requests: every record (all outcomes, rejected included), so it equals the usage report's.
 * - errors: `status = 'error'` (the engine or the gateway failed the request) or an HTTP status of
 *   500 and above. Refusals at admission (429, 402, 400…) and requests the client cancelled are not
 *   errors: the gateway did what it should.
 * - p95 latency: over completed requests (`status = 'ok'`), in whole milliseconds.
 * - p95 TTFT: over completed streamed requests (a non-streamed answer's first byte is its whole
 *   answer, which would only repeat the latency).
 * Percentiles are `percentile_cont` (linear interpolation); null when no request qualifies, as is
 * the error rate of a bucket without requests. Every bucket of the window is in the answer.
 */
import { and, eq, gte, lt, sql, type SQL } from "drizzle-orm";
import { z } from "zod";
import { usageRecords } from "../../../schema/tables/index.ts";
import { ApiError } from "../errors.ts";
import type { Db } from "../platform/db.ts";
import { reportQuery, reportWindow, TENANT_GROUPS } from "./report.ts";

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
/** The longest window of hour buckets (raw records are read, not rollups: keep it bounded). */
export const MAX_HOUR_DAYS = 31;
/** The longest window of day buckets. */
export const MAX_DAY_DAYS = 92;

/** What to compute: the tenant (null: all tenants, operator only), the hour-aligned window and the bucket. */
export interface StatsFilter {
  tenantId: string | null;
  start: Date;
  end: Date;
  bucket: "hour" | "day";
}

/** The statistics of one bucket, or of the whole window. */
export interface StatsValues {
  requests: number;
  errors: number;
  /** errors / requests; null without requests. */
  error_rate: number | null;
  p95_latency_ms: number | null;
  p95_ttft_ms: number | null;
}

/** One bucket's statistics. */
export type StatsRow = StatsValues & { period_start: string };

/** The `usage.stats` answer of `GET /admin/usage/stats`. */
export interface StatsJson {
  object: "usage.stats";
  tenant_id: string | null;
  start: string;
  end: string;
  bucket: "hour" | "day";
  data: StatsRow[];
  totals: StatsValues;
}

/** The query parameters (strict: an unknown parameter is refused, not ignored). */
export const statsQuery = reportQuery(TENANT_GROUPS)
  .pick({ start: true, end: true, bucket: true })
  .extend({ tenant_id: z.string().min(1).max(200).optional() })
  .strict();

/**
 * The window of `start`..`end` as the usage report cuts it (reportWindow: whole UTC hours, 7 days
 * by default), held to MAX_HOUR_DAYS for hour buckets and MAX_DAY_DAYS for day buckets.
 */
export function statsWindow(start: Date | undefined, end: Date | undefined, bucket: "hour" | "day", now = new Date()): { start: Date; end: Date } {
  const window = reportWindow(start, end, now);
  const max = bucket === "hour" ? MAX_HOUR_DAYS : MAX_DAY_DAYS;
  if (window.end.getTime() - window.start.getTime() > max * DAY_MS) {
    throw new ApiError("invalid_value", `Invalid start: statistics by ${bucket} cover at most ${max} days.`, { param: "start" });
  }
  return window;
}

/** The start of every bucket of the window, as `YYYY-MM-DDTHH:MM:SSZ` (UTC). */
export function bucketStarts(filter: Pick<StatsFilter, "start" | "end" | "bucket">): string[] {
  const step = filter.bucket === "hour" ? HOUR_MS : DAY_MS;
  const out: string[] = [];
  for (let t = Math.floor(filter.start.getTime() / step) * step; t < filter.end.getTime(); t += step) out.push(new Date(t).toISOString().replace(/\.\d{3}Z$/, "Z"));
  return out;
}

// Counts as int; percentiles rounded to whole ms as numeric (half away from zero, unlike a double's
// platform-dependent round).
const count = (where?: SQL) => (where ? sql<number>`(count(*) filter (where ${where}))::int` : sql<number>`count(*)::int`).mapWith(Number);
const p95 = (column: typeof usageRecords.latencyMs | typeof usageRecords.ttftMs, where: SQL) =>
  sql<number | null>`round((percentile_cont(0.95) within group (order by ${column}) filter (where ${where}))::numeric)::int`;

const isError = sql`${usageRecords.status} = 'error' or ${usageRecords.httpStatus} >= 500`;
const completed = sql`${usageRecords.status} = 'ok'`;
const completedStream = sql`${usageRecords.status} = 'ok' and ${usageRecords.streamed} and ${usageRecords.ttftMs} is not null`;

const measures = {
  requests: count(),
  errors: count(isError),
  p95_latency_ms: p95(usageRecords.latencyMs, completed),
  p95_ttft_ms: p95(usageRecords.ttftMs, completedStream),
};

function values(r: { requests: number; errors: number; p95_latency_ms: number | null; p95_ttft_ms: number | null }): StatsValues {
  return {
    requests: r.requests,
    errors: r.errors,
    error_rate: r.requests === 0 ? null : r.errors / r.requests,
    p95_latency_ms: r.p95_latency_ms,
    p95_ttft_ms: r.p95_ttft_ms,
  };
}

const EMPTY: StatsValues = { requests: 0, errors: 0, error_rate: null, p95_latency_ms: null, p95_ttft_ms: null };

/**
 * The statistics of the window, per bucket (every bucket, empty ones included) and in total. Reads
 * `usage_records` by `at` within the window, through an index: usage_records_tenant_at_idx (or
 * usage_records_at_idx, for a narrow window) for one tenant, usage_records_at_idx for all.
 */
export async function usageStats(db: Db, filter: StatsFilter): Promise<{ data: StatsRow[]; totals: StatsValues }> {
  const where = and(
    filter.tenantId === null ? undefined : eq(usageRecords.tenantId, filter.tenantId),
    gte(usageRecords.at, filter.start),
    lt(usageRecords.at, filter.end),
  );
  // Buckets are cut in UTC whatever the session's time zone (as the usage report's).
  const period = sql<string>`to_char(date_trunc(${filter.bucket}, ${usageRecords.at} at time zone 'UTC'), 'YYYY-MM-DD"T"HH24:MI:SS"Z"')`;
  const rows = await db
    .select({ period_start: period, ...measures })
    .from(usageRecords)
    .where(where)
    .groupBy(sql`1`);
  const [total] = await db.select(measures).from(usageRecords).where(where);
  const byPeriod = new Map(rows.map((r) => [r.period_start, values(r)]));
  return {
    data: bucketStarts(filter).map((period_start) => ({ period_start, ...(byPeriod.get(period_start) ?? EMPTY) })),
    totals: total ? values(total) : EMPTY,
  };
}
