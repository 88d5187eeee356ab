/**
 * `/admin/reservations` (operator only): reserved capacity — a tenant's tokens per second on a
 * model, served first from the nodes it names; when capacity is short, ordinary traffic is shed
 * before it.
 *
 * Reaching the gateway: reservations travel in the routing snapshot, so every change drops its
 * Redis entry and this isolate's caches; other isolates follow within ROUTING_CACHE_ISOLATE_SECONDS.
 *
 * The reads show the tenant's live throughput on the model (routing/reservation-usage.ts):
 * `delivered_tokens_per_second` over the last RESERVATION_WINDOW_SECONDS and `state`, "under" or
 * "over" its reserved rate (all its reservations on the model together, as routing counts them), or
 * "unknown" with a null rate when Redis does not answer.
 */
import { and, asc, eq, gt, inArray, type SQL } from "drizzle-orm";
import { Hono } from "hono";
import { z } from "zod";
import { capacityReservations, models, nodes, tenants } from "../../../schema/tables/index.ts";
import { ApiError } from "../errors.ts";
import { actorName, type AdminEnv } from "../admin/auth.ts";
import { dropRoutingSnapshot } from "../nodes/admin-state.ts";
import { reservationJson } from "../nodes/admin-wire.ts";
import { inTransaction, notFound, readJson, readQuery, reading, requireOperator, type AdminContext } from "../admin/http.ts";
import { decodeCursor, page, pageQuery } from "../admin/pagination.ts";
import { newId, recordAudit, type AdminDb } from "../admin/store.ts";
import { readRates, statusOf, usageWindow } from "./reservation-usage.ts";

type ReservationRow = typeof capacityReservations.$inferSelect;

const WHAT = "manage capacity reservations";
const id = z.string().trim().min(1).max(200);
const createBody = z.strictObject({
  tenant_id: id,
  model: id,
  tokens_per_second: z.number().int().min(1).max(100_000_000),
  node_ids: z.array(id).min(1).max(256),
});
const listQuery = z.object({ ...pageQuery, tenant_id: id.optional(), model: id.optional() });

function invalid(param: string, message: string): ApiError {
  return new ApiError("invalid_value", message, { param });
}

/** 400 naming the field unless the tenant, the model and every node exist. */
async function checkReferences(db: AdminDb, body: z.infer<typeof createBody>, nodeIds: string[]): Promise<void> {
  const [tenant] = await db.select({ id: tenants.id }).from(tenants).where(eq(tenants.id, body.tenant_id));
  if (!tenant) throw invalid("tenant_id", `Unknown tenant ${body.tenant_id}.`);
  const [model] = await db.select({ id: models.id }).from(models).where(eq(models.id, body.model));
  if (!model) throw invalid("model", `The model ${body.model} is not in the catalogue (GET /admin/models).`);
  const known = await db.select({ id: nodes.id }).from(nodes).where(inArray(nodes.id, nodeIds));
  const found = new Set(known.map((n) => n.id));
  const missing = nodeIds.filter((n) => !found.has(n));
  if (missing.length > 0) throw invalid("node_ids", `Unknown node${missing.length > 1 ? "s" : ""} ${missing.join(", ")} (GET /admin/nodes lists them).`);
}

/** The rows as JSON with their tenant's live throughput on the model against everything it reserved there. */
async function withUsage(c: AdminContext, rows: ReservationRow[]): Promise<Record<string, object>> {
  if (rows.length === 0) return {};
  const { redis, settings } = c.get("deps");
  const tenantIds = [...new Set(rows.map((r) => r.tenantId))];
  const [all, rates] = await Promise.all([
    reading(c, (db) => db.select().from(capacityReservations).where(inArray(capacityReservations.tenantId, tenantIds))),
    readRates(redis, settings.redisPrefix, usageWindow(settings.reservationWindowSeconds)),
  ]);
  const entries = all.map((r) => ({ tenantId: r.tenantId, model: r.model, tokensPerSecond: r.tokensPerSecond, nodeIds: r.nodeIds }));
  const out: Record<string, object> = {};
  for (const row of rows) {
    const status = statusOf(entries, rates, row.tenantId, row.model);
    out[row.id] = {
      ...reservationJson(row),
      delivered_tokens_per_second: status.delivered === null ? null : Math.round(status.delivered * 10) / 10,
      state: status.delivered === null ? "unknown" : status.state,
      window_seconds: settings.reservationWindowSeconds,
    };
  }
  return out;
}

function reservationId(c: AdminContext): string {
  requireOperator(c.get("actor"), WHAT);
  return c.req.param("id") ?? "";
}

/** The reservation routes, mounted at `/admin/reservations`. */
export const reservationRoutes = new Hono<AdminEnv>()
  .post("/", async (c) => {
    requireOperator(c.get("actor"), WHAT);
    const body = await readJson(c, createBody);
    const nodeIds = [...new Set(body.node_ids)];
    const row = await inTransaction(c, async (db) => {
      await checkReferences(db, body, nodeIds);
      const [row] = await db
        .insert(capacityReservations)
        .values({ id: newId("res"), tenantId: body.tenant_id, model: body.model, tokensPerSecond: body.tokens_per_second, nodeIds })
        .returning();
      if (!row) throw new Error("reservation insert returned no row");
      await recordAudit(db, actorName(c.get("actor")), "reservation.create", "capacity_reservation", row.id, row.tenantId, { after: reservationJson(row) });
      return row;
    });
    await dropRoutingSnapshot(c);
    // The same shape as GET: with the tenant's live throughput against it.
    return c.json((await withUsage(c, [row]))[row.id] ?? reservationJson(row), 201);
  })
  .get("/", async (c) => {
    requireOperator(c.get("actor"), WHAT);
    const { limit, cursor, tenant_id, model } = readQuery(c, listQuery);
    const after = decodeCursor(cursor, ["id"]);
    const where: (SQL | undefined)[] = [
      after ? gt(capacityReservations.id, after.id) : undefined,
      tenant_id === undefined ? undefined : eq(capacityReservations.tenantId, tenant_id),
      model === undefined ? undefined : eq(capacityReservations.model, model),
    ];
    const rows = await reading(c, (db) => db.select().from(capacityReservations).where(and(...where)).orderBy(asc(capacityReservations.id)).limit(limit + 1));
    const live = await withUsage(c, rows.slice(0, limit));
    return c.json(page(rows, limit, (r) => live[r.id] ?? reservationJson(r), (r) => ({ id: r.id })));
  })
  .get("/:id", async (c) => {
    const resId = reservationId(c);
    const [row] = await reading(c, (db) => db.select().from(capacityReservations).where(eq(capacityReservations.id, resId)));
    if (!row) throw notFound("reservation", resId);
    const live = await withUsage(c, [row]);
    return c.json(live[row.id] ?? reservationJson(row));
  })
  .delete("/:id", async (c) => {
    const resId = reservationId(c);
    await inTransaction(c, async (db) => {
      const [before] = await db.delete(capacityReservations).where(eq(capacityReservations.id, resId)).returning();
      if (!before) throw notFound("reservation", resId);
      await recordAudit(db, actorName(c.get("actor")), "reservation.delete", "capacity_reservation", resId, before.tenantId, { before: reservationJson(before) });
    });
    await dropRoutingSnapshot(c);
    return c.json({ object: "capacity_reservation", id: resId, deleted: true });
  });
