/**
 * What the usage page reads: its range form's parameters (UTC days, end day included) turned into
 * the admin API's query.
 */
import type { DashboardSession } from "../session.ts";

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

/** Report dimensions offered by the page (`tenant` only to the operator). */
export type GroupKey = "model" | "environment" | "key" | "tenant";

/** The range form: dates as typed (YYYY-MM-DD, UTC, both days included), bucket, grouping, tenant. */
export interface RangeForm {
  start: string;
  end: string;
  bucket: "day" | "hour";
  groupBy: GroupKey;
  /** The operator's tenant filter ("" = all tenants); a tenant session's own tenant otherwise. */
  tenantId: string;
}

/** A UTC day, YYYY-MM-DD. */
export function utcDay(at: Date): string {
  return at.toISOString().slice(0, 10);
}

/** The month before `at`'s, YYYY-MM (the last one complete). */
export function previousMonth(at: Date): string {
  return new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth() - 1, 1)).toISOString().slice(0, 7);
}

const DAY = /^\d{4}-\d{2}-\d{2}$/;

/** The range form from the query; the last 7 days (today included), by day and model, by default. */
export function readRange(query: Record<string, string>, session: DashboardSession, now = new Date()): RangeForm {
  const operator = session.actor.kind === "operator";
  const groups: GroupKey[] = operator ? ["model", "environment", "key", "tenant"] : ["model", "environment", "key"];
  const group = groups.find((g) => g === query.group_by) ?? "model";
  return {
    start: query.start?.trim() || utcDay(new Date(now.getTime() - 6 * DAY_MS)),
    end: query.end?.trim() || utcDay(now),
    bucket: query.bucket === "hour" ? "hour" : "day",
    groupBy: group,
    tenantId: operator ? (query.tenant_id ?? "").trim() : (query.tenant_id?.trim() || (session.actor.kind === "tenant" ? session.actor.tenantId : "")),
  };
}

/** The day after a YYYY-MM-DD (the end day is included, the API's end is exclusive); other text unchanged for the API to judge. */
function dayAfter(day: string): string {
  if (!DAY.test(day)) return day;
  const at = new Date(`${day}T00:00:00Z`);
  return Number.isNaN(at.getTime()) ? day : utcDay(new Date(at.getTime() + DAY_MS));
}

/** The query string of `GET /admin/usage` for the form (format json or csv). */
export function usageQuery(range: RangeForm, format: "json" | "csv"): string {
  const q = new URLSearchParams({ start: range.start, end: dayAfter(range.end), bucket: range.bucket, group_by: range.groupBy });
  if (range.tenantId !== "") q.set("tenant_id", range.tenantId);
  if (format === "csv") q.set("format", "csv");
  return q.toString();
}

/** The form's own query string (for links that keep the range: the CSV download). */
export function rangeQuery(range: RangeForm): string {
  const q = new URLSearchParams({ start: range.start, end: range.end, bucket: range.bucket, group_by: range.groupBy });
  if (range.tenantId !== "") q.set("tenant_id", range.tenantId);
  return q.toString();
}

/** The download's file name: the range's days, safe in a header. */
export function csvFileName(prefix: string, range: RangeForm): string {
  const safe = (s: string) => s.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 80);
  return `${prefix}-${safe(range.tenantId || "all")}-${safe(range.start)}-${safe(range.end)}.csv`;
}

/** Every bucket start from `start` to `end` (exclusive) at the report's grain; null when too many to list. */
export function bucketStarts(start: string, end: string, bucket: "day" | "hour", max = 1_500): string[] | null {
  const step = bucket === "day" ? DAY_MS : HOUR_MS;
  const from = new Date(start).getTime();
  const to = new Date(end).getTime();
  // Day buckets are cut at UTC midnight; the window may start mid-day.
  const first = Math.floor(from / step) * step;
  if ((to - first) / step > max) return null;
  const out: string[] = [];
  for (let t = first; t < to; t += step) out.push(new Date(t).toISOString().replace(".000Z", "Z"));
  return out;
}

