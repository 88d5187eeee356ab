/**
 * `GET /admin/counters/:scope/:scope_id`: how much of each of an entity's budgets is used in the
 * current period (the Redis counters that admission reserves against, limits/budgets.ts), with the
 * entity's configured and overridden rate limits. Read-only; Redis being down is a 503 here, since a
 * zero would look like no usage.
 */
import { and, asc, eq } from "drizzle-orm";
import { Hono } from "hono";
import { budgets } from "../../../schema/tables/index.ts";
import { ApiError } from "../errors.ts";
import { budgetCounter } from "./budgets.ts";
import type { AdminEnv } from "../admin/auth.ts";
import { reading } from "../admin/http.ts";
import { limitsJson, loadOverride } from "./admin.ts";
import { limitScope, resolveScope } from "../admin/scope.ts";
import { budgetJson, type CountersJson } from "../admin/wire.ts";

/** The counter routes, mounted at `/admin/counters`. */
export const counterRoutes = new Hono<AdminEnv>().get("/:scope/:scope_id", async (c) => {
  const parsed = limitScope.safeParse(c.req.param("scope"));
  if (!parsed.success) throw new ApiError("invalid_value", "The scope must be global, tenant, environment or key.", { param: "scope" });
  const scope = parsed.data;
  const scopeId = c.req.param("scope_id");
  const { rows, override } = await reading(c, async (db) => {
    await resolveScope(db, c.get("actor"), scope, scopeId);
    const rows = scope === "global" ? [] : await db.select().from(budgets).where(and(eq(budgets.scope, scope), eq(budgets.scopeId, scopeId))).orderBy(asc(budgets.id));
    return { rows, override: await loadOverride(db, scope, scopeId) };
  });
  const prefix = c.get("deps").settings.redisPrefix;
  const now = new Date();
  const keys = rows.map((b) => budgetCounter(prefix, { id: b.id, scope: b.scope, scopeId: b.scopeId, kind: b.kind, period: b.period, amount: b.amount }, now).key);
  let used: (number | string | null)[] = [];
  if (keys.length > 0) {
    try {
      used = await c.get("deps").redis.mget<(number | string | null)[]>(...keys);
    } catch (err) {
      c.get("deps").log("redis_unavailable", { during: "admin_counters", error: String(err) });
      throw new ApiError("dependency_unavailable", "The budget counters (Redis) cannot be read right now. Retry in a few seconds.", { headers: { "retry-after": "5" } });
    }
  }
  const body: CountersJson = {
    object: "counters",
    scope,
    scope_id: scopeId,
    budgets: rows.map((row, i) => {
      const value = Number(used[i] ?? 0);
      return { budget: budgetJson(row), used: value, remaining: Math.max(0, row.amount - value) };
    }),
    limits: limitsJson(c.get("deps").settings, scope, scopeId, override),
  };
  return c.json(body);
});
