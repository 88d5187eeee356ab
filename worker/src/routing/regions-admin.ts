/**
 * `/admin/regions` (operator only): where GPU nodes run. Coordinates drive nearest-region routing
 * (a region first seen in a heartbeat has none until they are set here); the price multiplier
 * scales the cost of usage served there.
 *
 * Reaching the gateway: regions travel in the routing snapshot, so an upsert drops its Redis entry
 * and this isolate's caches; other isolates follow within ROUTING_CACHE_ISOLATE_SECONDS.
 */
import { asc, eq } from "drizzle-orm";
import { Hono } from "hono";
import { z } from "zod";
import { nodes, regions } from "../../../schema/tables/index.ts";
import { ApiError } from "../errors.ts";
import { actorName, type AdminEnv } from "../admin/auth.ts";
import { dropRoutingSnapshot, readFleetLive } from "../nodes/admin-state.ts";
import { nodeHealthy, regionJson } from "../nodes/admin-wire.ts";
import { inTransaction, readJson, reading, requireOperator } from "../admin/http.ts";
import { recordAudit } from "../admin/store.ts";

const REGION_ID = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const WHAT = "manage regions";
const putBody = z.strictObject({
  name: z.string().trim().min(1).max(100).optional(),
  latitude: z.number().min(-90).max(90).nullable().optional(),
  longitude: z.number().min(-180).max(180).nullable().optional(),
  // numeric(8, 4); 0 would make usage there free by accident.
  price_multiplier: z.number().min(0.0001).max(1000).optional(),
});

const NO_NODES = { total: 0, healthy: 0 };

/** What the audit log keeps of a region (not its node counts, which are live). */
function audited(row: typeof regions.$inferSelect): Record<string, unknown> {
  const { nodes_total: _total, nodes_healthy: _healthy, ...fields } = regionJson(row, NO_NODES);
  return fields;
}

/** The region routes, mounted at `/admin/regions`. */
export const regionRoutes = new Hono<AdminEnv>()
  .get("/", async (c) => {
    requireOperator(c.get("actor"), WHAT);
    const [{ regionRows, nodeRows }, fleet] = await Promise.all([
      reading(c, async (db) => ({
        regionRows: await db.select().from(regions).orderBy(asc(regions.id)),
        nodeRows: await db.select({ id: nodes.id, regionId: nodes.regionId, status: nodes.status, lastHeartbeatAt: nodes.lastHeartbeatAt }).from(nodes),
      })),
      readFleetLive(c),
    ]);
    const now = Date.now();
    const counts = new Map<string, { total: number; healthy: number }>();
    for (const n of nodeRows) {
      const count = counts.get(n.regionId) ?? { total: 0, healthy: 0 };
      count.total++;
      if (nodeHealthy(n, fleet.live[n.id], now)) count.healthy++;
      counts.set(n.regionId, count);
    }
    return c.json({ object: "list", data: regionRows.map((r) => regionJson(r, counts.get(r.id) ?? NO_NODES)), next_cursor: null });
  })
  .put("/:id", async (c) => {
    requireOperator(c.get("actor"), WHAT);
    const id = c.req.param("id");
    if (!REGION_ID.test(id)) throw new ApiError("invalid_value", "A region id is 1-63 lowercase letters, digits, '.', '_' or '-'.", { param: "id" });
    const body = await readJson(c, putBody);
    const { row, created, regionNodes } = await inTransaction(c, async (db) => {
      const [before] = await db.select().from(regions).where(eq(regions.id, id)).for("update");
      const latitude = body.latitude === undefined ? (before?.latitude ?? null) : body.latitude;
      const longitude = body.longitude === undefined ? (before?.longitude ?? null) : body.longitude;
      // Half a coordinate would place the region nowhere; routing needs both or neither.
      if ((latitude === null) !== (longitude === null)) {
        const missing = latitude === null ? "latitude" : "longitude";
        throw new ApiError("invalid_value", `Set latitude and longitude together (${missing} is missing).`, { param: missing });
      }
      const values = {
        id,
        name: body.name ?? before?.name ?? id,
        latitude,
        longitude,
        ...(body.price_multiplier === undefined ? {} : { priceMultiplier: String(body.price_multiplier) }),
      };
      const [after] = await db
        .insert(regions)
        .values(values)
        .onConflictDoUpdate({ target: regions.id, set: { name: values.name, latitude, longitude, ...(values.priceMultiplier === undefined ? {} : { priceMultiplier: values.priceMultiplier }) } })
        .returning();
      if (!after) throw new Error("region upsert returned no row");
      await recordAudit(db, actorName(c.get("actor")), before ? "region.update" : "region.create", "region", id, null, {
        before: before ? audited(before) : null,
        after: audited(after),
      });
      const regionNodes = await db.select({ id: nodes.id, status: nodes.status, lastHeartbeatAt: nodes.lastHeartbeatAt }).from(nodes).where(eq(nodes.regionId, id));
      return { row: after, created: !before, regionNodes };
    });
    await dropRoutingSnapshot(c);
    const fleet = await readFleetLive(c);
    const now = Date.now();
    const healthy = regionNodes.filter((n) => nodeHealthy(n, fleet.live[n.id], now)).length;
    return c.json(regionJson(row, { total: regionNodes.length, healthy }), created ? 201 : 200);
  });
