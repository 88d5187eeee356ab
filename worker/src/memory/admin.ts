/**
 * `/admin/memory` (docs/memory.md): the trails of every tenant (a tenant admin key: its own tenant
 * only, another tenant named is a 404), and running the cooling job by hand (operator only).
 */
import { and, desc, eq, sql } from "drizzle-orm";
import { Hono } from "hono";
import { z } from "zod";
import { memoryTrails } from "../../../schema/tables/index.ts";
import { actorName, type AdminEnv } from "../admin/auth.ts";
import { canSee, notFound, readQuery, requireOperator } from "../admin/http.ts";
import { decodeCursor, page, pageQuery } from "../admin/pagination.ts";
import { recordAudit } from "../admin/store.ts";
import { coolTrails } from "./cool.ts";
import { memoryDb } from "./db.ts";
import { trailColumns, trailRow } from "./trails.ts";
import { adminTrailJson, coolingJson } from "./wire.ts";

const listQuery = z.object({ ...pageQuery, tenant_id: z.string().min(1).max(200).optional() }).strict();

/** The memory routes, mounted at `/admin/memory`. */
export const memoryAdminRoutes = new Hono<AdminEnv>()
  .get("/trails", async (c) => {
    const q = readQuery(c, listQuery);
    const actor = c.get("actor");
    if (q.tenant_id !== undefined && !canSee(actor, q.tenant_id)) throw notFound("tenant", q.tenant_id);
    const tenant = q.tenant_id ?? (actor.kind === "tenant" ? actor.tenantId : undefined);
    const after = decodeCursor(q.cursor, ["created_at", "id"]);
    const deps = c.get("deps");
    // Newest first; the cursor keeps Postgres' own text of the timestamp (a JS Date drops microseconds).
    const rows = await memoryDb(deps, (db) =>
      db
        .select({ ...trailColumns(deps.settings.memory.halfLifeHours), createdText: sql<string>`${memoryTrails.createdAt}::text` })
        .from(memoryTrails)
        .where(
          and(
            tenant === undefined ? undefined : eq(memoryTrails.tenantId, tenant),
            after ? sql`(${memoryTrails.createdAt}, ${memoryTrails.id}) < (${after.created_at}::timestamptz, ${after.id})` : undefined,
          ),
        )
        .orderBy(desc(memoryTrails.createdAt), desc(memoryTrails.id))
        .limit(q.limit + 1),
    );
    return c.json(page(rows, q.limit, (r) => adminTrailJson(trailRow(r)), (r) => ({ created_at: r.createdText, id: r.id })));
  })
  .post("/cool", async (c) => {
    const actor = c.get("actor");
    requireOperator(actor, "run the memory cooling job");
    const deps = c.get("deps");
    const memory = deps.settings.memory;
    const result = await memoryDb(deps, async (db) => {
      const cooled = await coolTrails(db, memory);
      await recordAudit(db, actorName(actor), "memory.cool", "memory", "trails", null, { cooled: cooled.cooled, removed: cooled.removed });
      return cooled;
    });
    return c.json(coolingJson(result, memory));
  });
