/** `GET /admin/usage`: usage reports; the operator sees every tenant, a tenant admin key its own only. */
import { Hono } from "hono";
import { z } from "zod";
import { reportResponse } from "./render.ts";
import { GROUPS, parseQuery, reportQuery, reportWindow, TENANT_GROUPS, usageReport, type ReportFilter } from "./report.ts";
import type { AdminEnv } from "../admin/auth.ts";
import { canSee, notFound } from "../admin/http.ts";

const tenantId = { tenant_id: z.string().min(1).max(200).optional() };
const operatorQuery = reportQuery(GROUPS).extend(tenantId);
const tenantQuery = reportQuery(TENANT_GROUPS).extend(tenantId);

/** The usage routes, mounted at `/admin/usage`. */
export const usageRoutes = new Hono<AdminEnv>().get("/", async (c) => {
  const actor = c.get("actor");
  const q = parseQuery(actor.kind === "operator" ? operatorQuery : tenantQuery, c.req.query());
  if (q.tenant_id !== undefined && !canSee(actor, q.tenant_id)) throw notFound("tenant", q.tenant_id);
  const tenant = q.tenant_id ?? (actor.kind === "tenant" ? actor.tenantId : null);
  const filter: ReportFilter = { tenantId: tenant, ...reportWindow(q.start, q.end), bucket: q.bucket, groupBy: q.group_by };
  const rows = await c.get("deps").db((db) => usageReport(db, filter));
  return reportResponse(filter, rows, q.format);
});
