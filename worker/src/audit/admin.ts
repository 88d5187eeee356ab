/** `GET /admin/audit`: audit log entries, newest first; a tenant admin key sees its tenant's only. */
import { and, desc, eq, sql, type SQL } from "drizzle-orm";
import { Hono } from "hono";
import { z } from "zod";
import { auditLogs } from "../../../schema/tables/index.ts";
import type { AdminEnv } from "../admin/auth.ts";
import { canSee, notFound, readQuery, reading } from "../admin/http.ts";
import { decodeCursor, page, pageQuery } from "../admin/pagination.ts";
import { auditJson } from "../admin/wire.ts";

const id = z.string().min(1).max(200);
const listQuery = z.object({ ...pageQuery, target_id: id.optional(), tenant_id: id.optional() });

/** The audit routes, mounted at `/admin/audit`. */
export const auditRoutes = new Hono<AdminEnv>().get("/", async (c) => {
  const { limit, cursor, target_id, tenant_id } = readQuery(c, listQuery);
  const actor = c.get("actor");
  if (tenant_id !== undefined && !canSee(actor, tenant_id)) throw notFound("tenant", tenant_id);
  // The cursor keeps Postgres' own text of the timestamp: a JS Date would drop its microseconds.
  const after = decodeCursor(cursor, ["at", "id"]);
  const tenantFilter = tenant_id ?? (actor.kind === "tenant" ? actor.tenantId : undefined);
  const where: (SQL | undefined)[] = [
    after ? sql`(${auditLogs.at}, ${auditLogs.id}) < (${after.at}::timestamptz, ${after.id})` : undefined,
    tenantFilter ? eq(auditLogs.tenantId, tenantFilter) : undefined,
    target_id ? eq(auditLogs.targetId, target_id) : undefined,
  ];
  const rows = await reading(c, (db) =>
    db
      .select({ row: auditLogs, atText: sql<string>`${auditLogs.at}::text` })
      .from(auditLogs)
      .where(and(...where))
      .orderBy(desc(auditLogs.at), desc(auditLogs.id))
      .limit(limit + 1),
  );
  return c.json(page(rows, limit, (r) => auditJson(r.row), (r) => ({ at: r.atText, id: r.row.id })));
});
