/**
 * Usage reports over the hourly rollups (`usage_hourly`). The rollups are written in the same
 * transaction as the records they sum (metering/flush.ts), so a report equals the sum of
 * `usage_records` over the same hours, to the token.
 */
import { and, asc, eq, gte, lt, sql, type AnyColumn } from "drizzle-orm";
import { z } from "zod";
import { usageHourly } from "../../../schema/tables/index.ts";
import { ApiError } from "../errors.ts";
import type { Db } from "../platform/db.ts";

/** Dimensions a report can be grouped by (`tenant` only on the admin API). */
export const GROUPS = ["tenant", "model", "environment", "key"] as const;
/** One dimension of `group_by`. */
export type GroupKey = (typeof GROUPS)[number];
/** The dimensions a tenant's own key may group by. */
export const TENANT_GROUPS: readonly GroupKey[] = ["model", "environment", "key"];

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
/** The longest window one report may cover. */
export const MAX_DAYS = 366;
const DEFAULT_DAYS = 7;

/** What to report: the tenant (null: all tenants, operator only), the hour-aligned window, the bucket and grouping. */
export interface ReportFilter {
  tenantId: string | null;
  start: Date;
  end: Date;
  bucket: "hour" | "day";
  groupBy: GroupKey[];
}

/** One row of a report: a bucket, the grouped dimensions, and the sums. */
export interface ReportRow {
  period_start: string;
  tenant_id?: string;
  model?: string;
  environment_id?: string;
  api_key_id?: string;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  cached_prompt_tokens: number;
  total_tokens: number;
  /** Seconds of audio transcribed or translated (ms precision). */
  audio_seconds: number;
  cost_usd: number;
  cost_micros: number;
  /** Part of the cost paid from credits (free tier, promotions). */
  credit_micros: number;
  /** cost − credits: what is invoiced. */
  billable_micros: number;
}

/** The sums of a report. */
export type ReportTotals = Pick<
  ReportRow,
  "requests" | "prompt_tokens" | "completion_tokens" | "cached_prompt_tokens" | "total_tokens" | "audio_seconds" | "cost_usd" | "cost_micros" | "credit_micros" | "billable_micros"
>;

// A date (UTC midnight) or a date-time with `Z` or an offset; a local time would be ambiguous.
const instant = z.union([z.iso.datetime({ offset: true }), z.iso.date()]).transform((s) => new Date(s));

/** The query parameters of a report; `groups` are the dimensions this caller may group by. */
export function reportQuery(groups: readonly GroupKey[]) {
  return z.object({
    start: instant.optional(),
    end: instant.optional(),
    bucket: z.enum(["hour", "day"]).default("day"),
    group_by: z
      .string()
      .default("")
      .transform((s) => s.split(",").map((g) => g.trim()).filter((g) => g !== ""))
      .pipe(z.array(z.enum(groups as [GroupKey, ...GroupKey[]]))),
    format: z.enum(["json", "csv"]).default("json"),
  });
}

/** Parses query parameters with `schema`; the first problem becomes a 400 `invalid_value` naming the parameter. */
export function parseQuery<S extends z.ZodType>(schema: S, query: Record<string, string>): z.infer<S> {
  const result = schema.safeParse(query);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const param = issue?.code === "unrecognized_keys" ? String(issue.keys[0]) : String(issue?.path[0] ?? "query");
  const message = issue?.code === "unrecognized_keys" ? `Unknown query parameter ${param}.` : `Invalid ${param}: ${issue?.message ?? "invalid value"}.`;
  throw new ApiError("invalid_value", message, { param });
}

/**
 * The window a report covers: `start` rounded down and `end` rounded up to whole UTC hours (the
 * rollups' grain, so the numbers stay exact); end exclusive. Defaults to the last 7 days up to the
 * end of the current hour.
 */
export function reportWindow(start: Date | undefined, end: Date | undefined, now = new Date()): { start: Date; end: Date } {
  const to = end ?? now;
  const from = start ?? new Date(to.getTime() - DEFAULT_DAYS * DAY_MS);
  if (from.getTime() >= to.getTime()) throw new ApiError("invalid_value", "Invalid end: it must be after start.", { param: "end" });
  if (to.getTime() - from.getTime() > MAX_DAYS * DAY_MS) {
    throw new ApiError("invalid_value", `Invalid start: a report covers at most ${MAX_DAYS} days.`, { param: "start" });
  }
  return { start: new Date(Math.floor(from.getTime() / HOUR_MS) * HOUR_MS), end: new Date(Math.ceil(to.getTime() / HOUR_MS) * HOUR_MS) };
}

const COLUMNS = {
  tenant: { column: usageHourly.tenantId, field: "tenant_id" },
  model: { column: usageHourly.model, field: "model" },
  environment: { column: usageHourly.environmentId, field: "environment_id" },
  key: { column: usageHourly.apiKeyId, field: "api_key_id" },
} as const;

// Sums come back from Postgres as bigint text; every total fits a double exactly (< 2^53).
const total = (column: AnyColumn) => sql<number>`coalesce(sum(${column}), 0)::bigint`.mapWith(Number);

/** The report's rows, ordered by bucket then by the grouped dimensions. */
export async function usageReport(db: Db, filter: ReportFilter): Promise<ReportRow[]> {
  const groups = [...new Set(filter.groupBy)].map((g) => COLUMNS[g]);
  // Buckets are cut in UTC whatever the session's time zone.
  const period = sql<string>`to_char(date_trunc(${filter.bucket}, ${usageHourly.hour} at time zone 'UTC'), 'YYYY-MM-DD"T"HH24:MI:SS"Z"')`;
  const dims = Object.fromEntries(groups.map((g) => [g.field, g.column]));
  const rows = await db
    .select({
      period_start: period,
      ...dims,
      requests: total(usageHourly.requests),
      prompt_tokens: total(usageHourly.promptTokens),
      completion_tokens: total(usageHourly.completionTokens),
      cached_prompt_tokens: total(usageHourly.cachedPromptTokens),
      audio_ms: total(usageHourly.audioMs),
      cost_micros: total(usageHourly.costMicros),
      credit_micros: total(usageHourly.creditMicros),
    })
    .from(usageHourly)
    .where(
      and(
        filter.tenantId === null ? undefined : eq(usageHourly.tenantId, filter.tenantId),
        gte(usageHourly.hour, filter.start),
        lt(usageHourly.hour, filter.end),
      ),
    )
    .groupBy(sql`1`, ...groups.map((g) => g.column))
    .orderBy(asc(sql`1`), ...groups.map((g) => asc(g.column)));
  return rows.map((r) => {
    const { audio_ms, ...row } = r as Omit<ReportRow, "total_tokens" | "audio_seconds" | "cost_usd" | "billable_micros"> & { audio_ms: number };
    return { ...row, total_tokens: row.prompt_tokens + row.completion_tokens, audio_seconds: audio_ms / 1000, cost_usd: row.cost_micros / 1e6, billable_micros: row.cost_micros - row.credit_micros };
  });
}

/** The sums over all rows of a report. */
export function reportTotals(rows: readonly ReportRow[]): ReportTotals {
  const sum = (pick: (r: ReportRow) => number) => rows.reduce((n, r) => n + pick(r), 0);
  const cost_micros = sum((r) => r.cost_micros);
  return {
    requests: sum((r) => r.requests),
    prompt_tokens: sum((r) => r.prompt_tokens),
    completion_tokens: sum((r) => r.completion_tokens),
    cached_prompt_tokens: sum((r) => r.cached_prompt_tokens),
    total_tokens: sum((r) => r.total_tokens),
    audio_seconds: sum((r) => Math.round(r.audio_seconds * 1000)) / 1000,
    cost_usd: cost_micros / 1e6,
    cost_micros,
    credit_micros: sum((r) => r.credit_micros),
    billable_micros: sum((r) => r.billable_micros),
  };
}
