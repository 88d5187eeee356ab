/**
 * `/admin/tenants`. Creating, deleting, suspending, resuming and changing the plan of a tenant are
 * the operator's; a tenant admin key sees only its own tenant and may rename it.
 *
 * Reaching the gateway: a tenant's status is part of each of its keys' cached identity, so a status
 * change or a delete drops the Redis cache entries of all its keys (invalidate.ts); a suspended
 * tenant's keys get 403 `tenant_suspended` within KEY_CACHE_ISOLATE_SECONDS.
 */
import { and, asc, eq, gt, type SQL } from "drizzle-orm";
import { Hono } from "hono";
import { z } from "zod";
import { tenants } from "../../../schema/tables/index.ts";
import { actorName, type AdminEnv } from "../admin/auth.ts";
import { canSee, definedFields, inTransaction, notFound, readJson, readQuery, reading, requireOperator, unique, type AdminContext } from "../admin/http.ts";
import { cacheKeysOf, dropCaches } from "../admin/invalidate.ts";
import { decodeCursor, page, pageQuery } from "../admin/pagination.ts";
import { budgetCounterKeys, deleteScopedSettings } from "../admin/scope.ts";
import { createTenant, recordAudit, type AdminDb } from "../admin/store.ts";
import { tenantJson } from "../admin/wire.ts";
import { deleteTenantSso } from "../dashboard/sso-admin.ts";

const name = z.string().trim().min(1).max(200);
const plan = z.string().trim().min(1).max(64);
const status = z.enum(["active", "suspended"]);
/** A Stripe customer id; null unlinks the tenant from Stripe. */
const stripeCustomerId = z.string().regex(/^cus_[A-Za-z0-9]{1,250}$/, "must be a Stripe customer id (cus_…)").nullable();
/** Conversation audit redaction rules: regexes (JavaScript syntax, applied with the `g` flag); one that does not compile is a 400. */
const auditRedactions = z
  .array(z.string().min(1).max(1000))
  .max(100)
  .nullable()
  .superRefine((rules, ctx) => {
    for (const [i, rule] of (rules ?? []).entries()) {
      try {
        new RegExp(rule, "g");
      } catch (err) {
        ctx.addIssue({ code: "custom", path: [i], message: `is not a valid regular expression: ${err instanceof Error ? err.message : String(err)}` });
      }
    }
  });
/** Days conversations are kept before the scheduled job deletes them (null: kept). */
const auditRetentionDays = z.number().int().min(1).max(3650).nullable();
const audit = { audit_redactions: auditRedactions.optional(), audit_retention_days: auditRetentionDays.optional() };
const createBody = z.strictObject({ name, plan: plan.optional(), stripe_customer_id: stripeCustomerId.optional(), ...audit });
const updateBody = z.strictObject({ name: name.optional(), plan: plan.optional(), status: status.optional(), stripe_customer_id: stripeCustomerId.optional(), ...audit });
const listQuery = z.object(pageQuery);

type TenantRow = typeof tenants.$inferSelect;

const CUSTOMER_TAKEN = "Another tenant is already linked to this Stripe customer.";

/** Loads a tenant the actor may see, locking it for the rest of the transaction; 404 otherwise. */
async function loadTenant(c: AdminContext, db: AdminDb, id: string): Promise<TenantRow> {
  const [row] = await db.select().from(tenants).where(eq(tenants.id, id)).for("update");
  if (!row || !canSee(c.get("actor"), row.id)) throw notFound("tenant", id);
  return row;
}

/** Applies a change to a tenant, audits it with before/after, and drops its keys' caches if admission changes. */
async function updateTenant(
  c: AdminContext,
  id: string,
  action: string,
  change: Partial<Pick<TenantRow, "name" | "plan" | "status" | "stripeCustomerId" | "auditRedactions" | "auditRetentionDays">>,
): Promise<Response> {
  const { after, cacheKeys } = await unique(CUSTOMER_TAKEN, "stripe_customer_id", () =>
    inTransaction(c, async (db) => {
      const before = await loadTenant(c, db, id);
      const fields = definedFields(change);
      if (fields === null) return { after: before, cacheKeys: [] };
      const [after] = await db.update(tenants).set(fields).where(eq(tenants.id, id)).returning();
      if (!after) throw notFound("tenant", id);
      await recordAudit(db, actorName(c.get("actor")), action, "tenant", id, id, { before: tenantJson(before), after: tenantJson(after) });
      const cacheKeys = before.status !== after.status ? await cacheKeysOf(db, c.get("deps").settings.redisPrefix, { tenantId: id }) : [];
      return { after, cacheKeys };
    }),
  );
  await dropCaches(c, cacheKeys);
  return c.json(tenantJson(after));
}

/** The tenant routes, mounted at `/admin/tenants`. */
export const tenantRoutes = new Hono<AdminEnv>()
  .post("/", async (c) => {
    requireOperator(c.get("actor"), "create tenants");
    const { stripe_customer_id: stripeCustomerId, audit_redactions: auditRedactions, audit_retention_days: auditRetentionDays, ...body } = await readJson(c, createBody);
    const row = await unique(CUSTOMER_TAKEN, "stripe_customer_id", () =>
      inTransaction(c, (db) => createTenant(db, actorName(c.get("actor")), { ...body, stripeCustomerId, auditRedactions, auditRetentionDays })),
    );
    return c.json(tenantJson(row), 201);
  })
  .get("/", async (c) => {
    const { limit, cursor } = readQuery(c, listQuery);
    const after = decodeCursor(cursor, ["id"]);
    const actor = c.get("actor");
    const where: (SQL | undefined)[] = [after ? gt(tenants.id, after.id) : undefined, actor.kind === "tenant" ? eq(tenants.id, actor.tenantId) : undefined];
    const rows = await reading(c, (db) => db.select().from(tenants).where(and(...where)).orderBy(asc(tenants.id)).limit(limit + 1));
    return c.json(page(rows, limit, tenantJson, (r) => ({ id: r.id })));
  })
  .get("/:id", async (c) => {
    const id = c.req.param("id");
    const [row] = await reading(c, (db) => db.select().from(tenants).where(eq(tenants.id, id)));
    if (!row || !canSee(c.get("actor"), row.id)) throw notFound("tenant", id);
    return c.json(tenantJson(row));
  })
  .patch("/:id", async (c) => {
    const { stripe_customer_id: stripeCustomerId, audit_redactions: auditRedactions, audit_retention_days: auditRetentionDays, ...body } = await readJson(c, updateBody);
    // Plan, status and the Stripe link are billing decisions: a tenant admin may only rename its tenant.
    if (body.plan !== undefined || body.status !== undefined || stripeCustomerId !== undefined) {
      requireOperator(c.get("actor"), "change a tenant's plan, status or Stripe customer");
    }
    return updateTenant(c, c.req.param("id"), "tenant.update", { ...body, stripeCustomerId, auditRedactions, auditRetentionDays });
  })
  .post("/:id/suspend", (c) => {
    requireOperator(c.get("actor"), "suspend tenants");
    return updateTenant(c, c.req.param("id"), "tenant.suspend", { status: "suspended" });
  })
  .post("/:id/resume", (c) => {
    requireOperator(c.get("actor"), "resume tenants");
    return updateTenant(c, c.req.param("id"), "tenant.resume", { status: "active" });
  })
  .delete("/:id", async (c) => {
    requireOperator(c.get("actor"), "delete tenants");
    const id = c.req.param("id");
    const prefix = c.get("deps").settings.redisPrefix;
    const cacheKeys = await inTransaction(c, async (db) => {
      const before = await loadTenant(c, db, id);
      const keys = await cacheKeysOf(db, prefix, { tenantId: id });
      const deletedBudgets = await deleteScopedSettings(db, { tenantId: id });
      // Its dashboard single sign-on, invitations and sessions go too (they reference it by id only).
      await deleteTenantSso(db, id);
      // Environments and keys go with the tenant (ON DELETE CASCADE); audit rows stay.
      await db.delete(tenants).where(eq(tenants.id, id));
      await recordAudit(db, actorName(c.get("actor")), "tenant.delete", "tenant", id, id, { before: tenantJson(before) });
      return [...keys, ...budgetCounterKeys(prefix, deletedBudgets)];
    });
    await dropCaches(c, cacheKeys);
    return c.json({ object: "tenant", id, deleted: true });
  });
