/**
 * `/admin/environments`. A tenant admin key works only inside its tenant; anything else is 404.
 *
 * Reaching the gateway: an environment's pinned region, routing strategy, region overrides, audit mode, cache switch and priority class are
 * part of its keys' cached identity, so changing them or deleting the environment drops the Redis
 * cache entries of all its keys (invalidate.ts); isolates follow within KEY_CACHE_ISOLATE_SECONDS.
 */
import { and, asc, eq, gt, inArray, type SQL } from "drizzle-orm";
import { Hono } from "hono";
import { z } from "zod";
import { environments, regions, tenants } from "../../../schema/tables/index.ts";
import { ApiError } from "../errors.ts";
import { PRIORITY_CLASSES } from "../priority/class.ts";
import { ROUTING_STRATEGIES } from "../routing/snapshot.ts";
import { actorName, type AdminEnv } from "../admin/auth.ts";
import { canSee, definedFields, inTransaction, notFound, readJson, readQuery, reading, unique, type AdminContext } from "../admin/http.ts";
import { cacheKeysOf, dropCaches } from "../admin/invalidate.ts";
import { decodeCursor, page, pageQuery } from "../admin/pagination.ts";
import { budgetCounterKeys, deleteScopedSettings } from "../admin/scope.ts";
import { createEnvironment, recordAudit, type AdminDb } from "../admin/store.ts";
import { environmentJson } from "../admin/wire.ts";

const id = z.string().min(1).max(100);
const name = z.string().trim().min(1).max(100);
const region = z.string().trim().min(1).max(100).nullable();
const strategy = z.enum(ROUTING_STRATEGIES).nullable();
/** In region_overrides: any region may be asked for. */
const ANY_REGION = "*";
// Regions a request may ask for with x-switchyard-region (null: none).
const regionOverrides = z
  .array(z.string().trim().min(1).max(100))
  .max(64)
  .nullable()
  .transform((ids) => (ids === null ? null : [...new Set(ids)]));
const auditMode = z.enum(["off", "metadata", "full"]);
// Scheduling class of the environment's keys without their own (null: standard; docs/priority.md).
const priorityClass = z.enum(PRIORITY_CLASSES).nullable();
const routing = {
  pinned_region: region.optional(),
  routing_strategy: strategy.optional(),
  region_overrides: regionOverrides.optional(),
  audit_mode: auditMode.optional(),
  cache_enabled: z.boolean().optional(),
  priority_class: priorityClass.optional(),
};
const createBody = z.strictObject({ tenant_id: id, name, ...routing });
const updateBody = z.strictObject({ name: name.optional(), ...routing });
const listQuery = z.object({ ...pageQuery, tenant_id: id.optional() });

const DUPLICATE = "The tenant already has an environment with this name.";

/** Loads an environment the actor may see (locked for the transaction); 404 otherwise. */
async function loadEnvironment(c: AdminContext, db: AdminDb, envId: string, lock: boolean): Promise<typeof environments.$inferSelect> {
  const query = db.select().from(environments).where(eq(environments.id, envId));
  const [row] = lock ? await query.for("update") : await query;
  if (!row || !canSee(c.get("actor"), row.tenantId)) throw notFound("environment", envId);
  return row;
}

/** 400 unless the regions exist (pinning to a misspelt region would leave the environment with no nodes). */
async function checkRegions(db: AdminDb, regionIds: string[] | null | undefined, param: string): Promise<void> {
  if (regionIds === null || regionIds === undefined || regionIds.length === 0) return;
  const rows = await db.select({ id: regions.id }).from(regions).where(inArray(regions.id, regionIds));
  const missing = regionIds.find((r) => !rows.some((row) => row.id === r));
  if (missing !== undefined) {
    throw new ApiError("invalid_value", `Unknown region ${missing}. Regions are created by node heartbeats or PUT /admin/regions/{id}.`, { param });
  }
}

/** 400 unless the pinned region and the region overrides exist. */
async function checkRouting(db: AdminDb, body: { pinned_region?: string | null; region_overrides?: string[] | null }): Promise<void> {
  await checkRegions(db, body.pinned_region === undefined || body.pinned_region === null ? null : [body.pinned_region], "pinned_region");
  await checkRegions(db, body.region_overrides?.filter((r) => r !== ANY_REGION), "region_overrides");
}

/** True when a change alters what the environment's keys carry in their cached identity. */
function identityChanged(before: typeof environments.$inferSelect, after: typeof environments.$inferSelect): boolean {
  const overrides = (row: typeof environments.$inferSelect) => (row.regionOverrides === null ? null : row.regionOverrides.join(","));
  return before.pinnedRegion !== after.pinnedRegion || before.routingStrategy !== after.routingStrategy || overrides(before) !== overrides(after) || before.auditMode !== after.auditMode || before.cacheEnabled !== after.cacheEnabled || before.priorityClass !== after.priorityClass;
}

/** The environment routes, mounted at `/admin/environments`. */
export const environmentRoutes = new Hono<AdminEnv>()
  .post("/", async (c) => {
    const body = await readJson(c, createBody);
    const row = await inTransaction(c, async (db) => {
      const [tenant] = await db.select({ id: tenants.id }).from(tenants).where(eq(tenants.id, body.tenant_id));
      if (!tenant || !canSee(c.get("actor"), tenant.id)) throw notFound("tenant", body.tenant_id);
      await checkRouting(db, body);
      return unique(DUPLICATE, "name", () =>
        createEnvironment(db, actorName(c.get("actor")), {
          tenantId: tenant.id,
          name: body.name,
          pinnedRegion: body.pinned_region ?? null,
          routingStrategy: body.routing_strategy ?? null,
          regionOverrides: body.region_overrides ?? null,
          auditMode: body.audit_mode ?? "off",
          cacheEnabled: body.cache_enabled ?? true,
          priorityClass: body.priority_class ?? null,
        }),
      );
    });
    return c.json(environmentJson(row), 201);
  })
  .get("/", async (c) => {
    const { limit, cursor, tenant_id } = readQuery(c, listQuery);
    const actor = c.get("actor");
    if (tenant_id !== undefined && !canSee(actor, tenant_id)) throw notFound("tenant", tenant_id);
    const after = decodeCursor(cursor, ["id"]);
    const tenantFilter = tenant_id ?? (actor.kind === "tenant" ? actor.tenantId : undefined);
    const where: (SQL | undefined)[] = [after ? gt(environments.id, after.id) : undefined, tenantFilter ? eq(environments.tenantId, tenantFilter) : undefined];
    const rows = await reading(c, (db) => db.select().from(environments).where(and(...where)).orderBy(asc(environments.id)).limit(limit + 1));
    return c.json(page(rows, limit, environmentJson, (r) => ({ id: r.id })));
  })
  .get("/:id", async (c) => {
    const row = await reading(c, (db) => loadEnvironment(c, db, c.req.param("id"), false));
    return c.json(environmentJson(row));
  })
  .patch("/:id", async (c) => {
    const body = await readJson(c, updateBody);
    const envId = c.req.param("id");
    const { after, cacheKeys } = await inTransaction(c, async (db) => {
      const before = await loadEnvironment(c, db, envId, true);
      await checkRouting(db, body);
      const change = definedFields({ name: body.name, pinnedRegion: body.pinned_region, routingStrategy: body.routing_strategy, regionOverrides: body.region_overrides, auditMode: body.audit_mode, cacheEnabled: body.cache_enabled, priorityClass: body.priority_class });
      if (change === null) return { after: before, cacheKeys: [] };
      const [after] = await unique(DUPLICATE, "name", () => db.update(environments).set(change).where(eq(environments.id, envId)).returning());
      if (!after) throw notFound("environment", envId);
      await recordAudit(db, actorName(c.get("actor")), "environment.update", "environment", envId, after.tenantId, {
        before: environmentJson(before),
        after: environmentJson(after),
      });
      const cacheKeys = identityChanged(before, after) ? await cacheKeysOf(db, c.get("deps").settings.redisPrefix, { environmentId: envId }) : [];
      return { after, cacheKeys };
    });
    await dropCaches(c, cacheKeys);
    return c.json(environmentJson(after));
  })
  .delete("/:id", async (c) => {
    const envId = c.req.param("id");
    const prefix = c.get("deps").settings.redisPrefix;
    const cacheKeys = await inTransaction(c, async (db) => {
      const before = await loadEnvironment(c, db, envId, true);
      const keys = await cacheKeysOf(db, prefix, { environmentId: envId });
      const deletedBudgets = await deleteScopedSettings(db, { environmentId: envId });
      // The environment's keys go with it (ON DELETE CASCADE).
      await db.delete(environments).where(eq(environments.id, envId));
      await recordAudit(db, actorName(c.get("actor")), "environment.delete", "environment", envId, before.tenantId, { before: environmentJson(before) });
      return [...keys, ...budgetCounterKeys(prefix, deletedBudgets)];
    });
    await dropCaches(c, cacheKeys);
    return c.json({ object: "environment", id: envId, deleted: true });
  });
