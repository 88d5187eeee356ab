/**
 * `GET /admin/audit`: audit log entries, newest first; a tenant admin key sees its tenant's only.
 *
 * Filters (all optional, combined with AND): `target_id` and `actor` (exact), `action` (exact, or a
 * prefix when it ends with `.` or `*`: `api_key.` or `api_key*` finds every key change), `tenant_id`,
 * and `q`: a case-insensitive substring of the action, actor, target id or details (as JSON text).
 * The tenant scope of the caller applies before any of them.
 */
import { and, desc, eq, sql, type SQL } from "drizzle-orm";
import { Hono } from "hono";
import { z } from "zod";
import { auditLogs } from "../../../schema/tables/index.ts";
import type { AdminEnv } from "../admin/auth.ts";
import { canSee, notFound, readQuery, reading } from "../admin/http.ts";
import { decodeCursor, page, pageQuery } from "../admin/pagination.ts";
import { auditJson } from "../admin/wire.ts";

const id = z.string().min(1).max(200);
const listQuery = z.object({
  ...pageQuery,
  target_id: id.optional(),
  tenant_id: id.optional(),
  actor: id.optional(),
  action: z.string().trim().min(1).max(100).optional(),
  // Bounded: the search scans the rows' text, so a query is a phrase, not a document.
  q: z.string().trim().min(1).max(200).optional(),
});

/** `text` as a LIKE pattern that matches it literally (`\` is Postgres' default LIKE escape). */
function likeLiteral(text: string): string {
  return text.replace(/[\\%_]/g, (ch) => `\\${ch}`);
}

/** The `action` filter: a prefix when it ends with `.` or `*`, else the exact action. */
function actionFilter(action: string): SQL {
  if (action.endsWith("*")) return sql`${auditLogs.action} like ${`${likeLiteral(action.slice(0, -1))}%`}`;
  if (action.endsWith(".")) return sql`${auditLogs.action} like ${`${likeLiteral(action)}%`}`;
  return eq(auditLogs.action, action);
}

/** The free-text filter over action, actor, target id and details. */
function textFilter(q: string): SQL {
  const pattern = `%${likeLiteral(q)}%`;
  return sql`(${auditLogs.action} ilike ${pattern} or ${auditLogs.actor} ilike ${pattern} or ${auditLogs.targetId} ilike ${pattern} or ${auditLogs.details}::text ilike ${pattern})`;
}

/** The audit routes, mounted at `/admin/audit`. */
export const auditRoutes = new Hono<AdminEnv>().get("/", async (c) => {
  const { limit, cursor, target_id, tenant_id, actor: actorFilter, action, q } = readQuery(c, listQuery);
  const actor = c.get("actor");
  if (tenant_id !== undefined && !canSee(actor, tenant_id)) throw notFound("tenant", tenant_id);
  // The cursor keeps Postgres' own text of the timestamp: a JS Date would drop its microseconds.
  const after = decodeCursor(cursor, ["at", "id"]);
  const tenantFilter = tenant_id ?? (actor.kind === "tenant" ? actor.tenantId : undefined);
  const where: (SQL | undefined)[] = [
    after ? sql`(${auditLogs.at}, ${auditLogs.id}) < (${after.at}::timestamptz, ${after.id})` : undefined,
    tenantFilter ? eq(auditLogs.tenantId, tenantFilter) : undefined,
    target_id ? eq(auditLogs.targetId, target_id) : undefined,
    actorFilter ? eq(auditLogs.actor, actorFilter) : undefined,
    action ? actionFilter(action) : undefined,
    q ? textFilter(q) : undefined,
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
