import type { Context } from "hono";
import type { AppEnv } from "../env.ts";
import { reportResponse } from "./render.ts";
import { parseQuery, reportQuery, reportWindow, TENANT_GROUPS, usageReport, type ReportFilter } from "./report.ts";

// Strict: an unknown parameter (a `tenant_id` above all) is refused rather than silently ignored.
const query = reportQuery(TENANT_GROUPS).strict();

/**
 * `GET /v1/usage`: the calling key's tenant's usage, bucketed by hour or day and optionally grouped
 * by model, environment and key; `?format=csv` for a download. Any key of the tenant may read it.
 */
export async function usageHandler(c: Context<AppEnv>): Promise<Response> {
  const q = parseQuery(query, c.req.query());
  const filter: ReportFilter = { tenantId: c.get("identity").tenantId, ...reportWindow(q.start, q.end), bucket: q.bucket, groupBy: q.group_by };
  const rows = await c.get("deps").db((db) => usageReport(db, filter));
  return reportResponse(filter, rows, q.format);
}
