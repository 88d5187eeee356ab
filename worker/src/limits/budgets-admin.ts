/**
 * `/admin/budgets`: budgets and quotas of a tenant, environment or key (tokens, spend in micro-USD,
 * or requests, per day, per month or in total). A tenant's own budgets are the operator's; a tenant
 * admin key manages those of its environments and keys.
 *
 * Reaching the gateway: budgets travel in each key's cached identity, so adding, changing or
 * deleting one drops the Redis cache entries of every key of its tenant, environment or key
 * (invalidate.ts); isolates follow within KEY_CACHE_ISOLATE_SECONDS. Deleting a budget also deletes
 * its counter of the current period (older periods' counters expire on their own).
 */
import { and, asc, eq, gt, type SQL } from "drizzle-orm";
import { Hono } from "hono";
import { z } from "zod";
import { budgets } from "../../../schema/tables/index.ts";
import { ApiError } from "../errors.ts";
import { actorName, type AdminEnv } from "../admin/auth.ts";
import { inTransaction, notFound, readJson, readQuery, reading, unique, type AdminContext } from "../admin/http.ts";
import { cacheKeysOf, dropCaches } from "../admin/invalidate.ts";
import { decodeCursor, page, pageQuery } from "../admin/pagination.ts";
import { budgetCounterKeys, budgetScope, requireWritable, resolveScope, tenantBudgetFilter, type ScopeTarget } from "../admin/scope.ts";
import { newId, recordAudit, type AdminDb } from "../admin/store.ts";
import { budgetJson } from "../admin/wire.ts";

const id = z.string().min(1).max(100);
const amount = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const createBody = z.strictObject({
  scope: budgetScope,
  scope_id: id,
  kind: z.enum(["tokens", "spend", "requests"]),
  period: z.enum(["day", "month", "total"]),
  amount,
});
const updateBody = z.strictObject({ amount });
const listQuery = z.object({ ...pageQuery, scope: budgetScope.optional(), scope_id: id.optional() });

type BudgetRow = typeof budgets.$inferSelect;

/** Loads a budget and its entity; 404 (naming the budget) when the actor may not see them. */
async function loadBudget(c: AdminContext, db: AdminDb, budgetId: string, lock: boolean): Promise<{ row: BudgetRow; target: ScopeTarget }> {
  const query = db.select().from(budgets).where(eq(budgets.id, budgetId));
  const [row] = lock ? await query.for("update") : await query;
  if (!row) throw notFound("budget", budgetId);
  const target = await resolveScope(db, c.get("actor"), row.scope, row.scopeId).catch((err: unknown) => {
    throw err instanceof ApiError && err.code === "not_found" ? notFound("budget", budgetId) : err;
  });
  return { row, target };
}

/** Loads a budget the actor may change. */
async function loadForChange(c: AdminContext, db: AdminDb, budgetId: string): Promise<{ row: BudgetRow; target: ScopeTarget }> {
  const loaded = await loadBudget(c, db, budgetId, true);
  requireWritable(c.get("actor"), loaded.target);
  return loaded;
}

/** The budget routes, mounted at `/admin/budgets`. */
export const budgetRoutes = new Hono<AdminEnv>()
  .post("/", async (c) => {
    const body = await readJson(c, createBody);
    const { row, cacheKeys } = await inTransaction(c, async (db) => {
      const target = await resolveScope(db, c.get("actor"), body.scope, body.scope_id);
      requireWritable(c.get("actor"), target);
      const [row] = await unique(`The ${body.scope} already has a ${body.kind} budget per ${body.period}; change its amount instead.`, "period", () =>
        db
          .insert(budgets)
          .values({ id: newId("bud"), scope: body.scope, scopeId: body.scope_id, kind: body.kind, period: body.period, amount: body.amount })
          .returning(),
      );
      if (!row) throw new Error("budget insert returned no row");
      await recordAudit(db, actorName(c.get("actor")), "budget.create", "budget", row.id, target.tenantId, { after: budgetJson(row) });
      return { row, cacheKeys: await cacheKeysOf(db, c.get("deps").settings.redisPrefix, target.affected) };
    });
    await dropCaches(c, cacheKeys);
    return c.json(budgetJson(row), 201);
  })
  .get("/", async (c) => {
    const query = readQuery(c, listQuery);
    if ((query.scope === undefined) !== (query.scope_id === undefined)) {
      throw new ApiError("invalid_value", "Give both scope and scope_id, or neither.", { param: query.scope === undefined ? "scope" : "scope_id" });
    }
    const after = decodeCursor(query.cursor, ["id"]);
    const actor = c.get("actor");
    const rows = await reading(c, async (db) => {
      let owner: SQL | undefined;
      if (query.scope !== undefined && query.scope_id !== undefined) {
        await resolveScope(db, actor, query.scope, query.scope_id);
        owner = and(eq(budgets.scope, query.scope), eq(budgets.scopeId, query.scope_id));
      } else if (actor.kind === "tenant") {
        owner = await tenantBudgetFilter(db, actor.tenantId);
      }
      const where: (SQL | undefined)[] = [after ? gt(budgets.id, after.id) : undefined, owner];
      return db.select().from(budgets).where(and(...where)).orderBy(asc(budgets.id)).limit(query.limit + 1);
    });
    return c.json(page(rows, query.limit, budgetJson, (r) => ({ id: r.id })));
  })
  .get("/:id", async (c) => {
    const budgetId = c.req.param("id");
    const { row } = await reading(c, (db) => loadBudget(c, db, budgetId, false));
    return c.json(budgetJson(row));
  })
  .patch("/:id", async (c) => {
    // Changing the amount keeps the budget's id, so its usage so far still counts.
    const body = await readJson(c, updateBody);
    const budgetId = c.req.param("id");
    const { after, cacheKeys } = await inTransaction(c, async (db) => {
      const { row, target } = await loadForChange(c, db, budgetId);
      const [after] = await db.update(budgets).set({ amount: body.amount }).where(eq(budgets.id, budgetId)).returning();
      if (!after) throw notFound("budget", budgetId);
      await recordAudit(db, actorName(c.get("actor")), "budget.update", "budget", budgetId, target.tenantId, { before: budgetJson(row), after: budgetJson(after) });
      return { after, cacheKeys: await cacheKeysOf(db, c.get("deps").settings.redisPrefix, target.affected) };
    });
    await dropCaches(c, cacheKeys);
    return c.json(budgetJson(after));
  })
  .delete("/:id", async (c) => {
    const budgetId = c.req.param("id");
    const prefix = c.get("deps").settings.redisPrefix;
    const cacheKeys = await inTransaction(c, async (db) => {
      const { row, target } = await loadForChange(c, db, budgetId);
      await db.delete(budgets).where(eq(budgets.id, budgetId));
      await recordAudit(db, actorName(c.get("actor")), "budget.delete", "budget", budgetId, target.tenantId, { before: budgetJson(row) });
      return [...(await cacheKeysOf(db, prefix, target.affected)), ...budgetCounterKeys(prefix, [row])];
    });
    await dropCaches(c, cacheKeys);
    return c.json({ object: "budget", id: budgetId, deleted: true });
  });
