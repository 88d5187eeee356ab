/** The usage report's two wire forms: JSON (`usage.report`) and CSV. */
import { reportTotals, type ReportFilter, type ReportRow } from "./report.ts";

const DIMENSIONS = ["tenant_id", "model", "environment_id", "api_key_id"] as const;
const MEASURES = ["requests", "prompt_tokens", "completion_tokens", "cached_prompt_tokens", "total_tokens", "audio_seconds", "cost_usd", "cost_micros", "credit_micros", "billable_micros"] as const;
const GROUP_FIELD = { tenant: "tenant_id", model: "model", environment: "environment_id", key: "api_key_id" } as const;

// RFC 4180: quote a field holding a comma, quote or line break, doubling its quotes.
function csvField(value: string | number): string {
  const text = String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** `2026-01-05T13Z`: the hour-aligned instants of a window, safe in a file name. */
function fileStamp(at: Date): string {
  return `${at.toISOString().slice(0, 13)}Z`;
}

/** The report as a response: JSON by default, or a CSV download (header row, one line per row). */
export function reportResponse(filter: ReportFilter, rows: ReportRow[], format: "json" | "csv"): Response {
  const start = filter.start.toISOString();
  const end = filter.end.toISOString();
  if (format === "json") {
    const body = { object: "usage.report", tenant_id: filter.tenantId, start, end, bucket: filter.bucket, group_by: filter.groupBy, data: rows, totals: reportTotals(rows) };
    return new Response(JSON.stringify(body), { headers: { "content-type": "application/json" } });
  }
  const grouped = new Set<string>(filter.groupBy.map((g) => GROUP_FIELD[g]));
  const columns = ["period_start", ...DIMENSIONS.filter((d) => grouped.has(d)), ...MEASURES] as const;
  const lines = [columns.join(","), ...rows.map((r) => columns.map((col) => csvField(r[col] ?? "")).join(","))];
  const filename = `usage-${filter.tenantId ?? "all"}-${fileStamp(filter.start)}-${fileStamp(filter.end)}.csv`;
  return new Response(`${lines.join("\r\n")}\r\n`, {
    headers: { "content-type": "text/csv; charset=utf-8", "content-disposition": `attachment; filename="${filename}"` },
  });
}
