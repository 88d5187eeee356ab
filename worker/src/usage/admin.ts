/**
 * `GET /admin/usage` (usage reports) and `GET /admin/usage/stats` (request statistics: errors,
 * p95 latency and TTFT, stats.ts); the operator sees every tenant, a tenant admin its own only.
 */
import { Hono } from "hono";
import { z } from "zod";
import { reportResponse } from "./render.ts";
import { GROUPS, parseQuery, reportQuery, reportWindow, TENANT_GROUPS, usageReport, type ReportFilter } from "./report.ts";
import { canSee, notFound } from "../admin/http.ts";
import type { AdminActor, AdminEnv } from "../admin/auth.ts";
import { statsQuery, statsWindow, usageStats, type StatsJson } from "./stats.ts";

const tenantId = { tenant_id: z.string().min(1).max(200).optional() };
const operatorQuery = reportQuery(GROUPS).extend(tenantId);
const tenantQuery = reportQuery(TENANT_GROUPS).extend(tenantId);

/** The tenant a read covers: the one asked for (404 outside the actor's), else the actor's own (null: all, operator). */
function scopedTenant(actor: AdminActor, asked: string | undefined): string | null {
  if (asked !== undefined && !canSee(actor, asked)) throw notFound("tenant", asked);
  return asked ?? (actor.kind === "tenant" ? actor.tenantId : null);
}

/** The usage routes, mounted at `/admin/usage`. */
export const usageRoutes = new Hono<AdminEnv>()
  .get("/", async (c) => {
    const actor = c.get("actor");
    const q = parseQuery(actor.kind === "operator" ? operatorQuery : tenantQuery, c.req.query());
    const filter: ReportFilter = { tenantId: scopedTenant(actor, q.tenant_id), ...reportWindow(q.start, q.end), bucket: q.bucket, groupBy: q.group_by };
    const rows = await c.get("deps").db((db) => usageReport(db, filter));
    return reportResponse(filter, rows, q.format);
  })
  .get("/stats", async (c) => {
    const q = parseQuery(statsQuery, c.req.query());
    const filter = { tenantId: scopedTenant(c.get("actor"), q.tenant_id), ...statsWindow(q.start, q.end, q.bucket), bucket: q.bucket };
    const { data, totals } = await c.get("deps").db((db) => usageStats(db, filter));
    const body: StatsJson = { object: "usage.stats", tenant_id: filter.tenantId, start: filter.start.toISOString(), end: filter.end.toISOString(), bucket: filter.bucket, data, totals };
    return c.json(body);
  });
