/**
 * `GET /admin/counters/:scope/:scope_id`: how much of each of an entity's budgets (current period)
 * and of its effective rate and in-flight limits is used, held in isolates' capacity leases, and free
 * across the deployment (limits/lease-view.ts), with the entity's configured and overridden limits.
 * Read-only; Redis being down is a 503 here, since a zero would look like no usage.
 */
import { and, asc, eq } from "drizzle-orm";
import { Hono } from "hono";
import { budgets } from "../../../schema/tables/index.ts";
import { ApiError } from "../errors.ts";
import { budgetCounter } from "./budgets.ts";
import type { Resource } from "./leases.ts";
import { readResourceViews, type ResourceView } from "./lease-view.ts";
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
  const settings = c.get("deps").settings;
  const prefix = settings.redisPrefix;
  const now = new Date();
  const budgetResources: Resource[] = rows.map((b) => {
    const counter = budgetCounter(prefix, { id: b.id, scope: b.scope, scopeId: b.scopeId, kind: b.kind, period: b.period, amount: b.amount }, now);
    return { key: counter.key, kind: "budget", limit: b.amount, extra: counter.ttlSeconds };
  });
  const limits = limitsJson(settings, scope, scopeId, override);
  const id = scope === "global" ? "global" : `${scope === "environment" ? "env" : scope}:${scopeId}`;
  const { rpm, tpm, concurrency } = limits.effective;
  const live: { name: keyof CountersJson["live"]; resource: Resource | null }[] = [
    { name: "requests_per_minute", resource: rpm === null ? null : { key: `${prefix}rl:req:${id}`, kind: "rate", limit: rpm, extra: rpm / 60 } },
    { name: "tokens_per_minute", resource: tpm === null ? null : { key: `${prefix}rl:tok:${id}`, kind: "rate", limit: tpm, extra: tpm / 60 } },
    // In-flight caps apply at the tenant and key layers only.
    { name: "concurrency", resource: concurrency === null || (scope !== "tenant" && scope !== "key") ? null : { key: `${prefix}cc:${id}`, kind: "slots", limit: concurrency, extra: 0 } },
  ];
  let views: ResourceView[];
  try {
    views = await readResourceViews(c.get("deps").redis, [...budgetResources, ...live.flatMap((l) => (l.resource ? [l.resource] : []))], now.getTime());
  } catch (err) {
    c.get("deps").log("redis_unavailable", { during: "admin_counters", error: String(err) });
    throw new ApiError("dependency_unavailable", "The counters (Redis) cannot be read right now. Retry in a few seconds.", { headers: { "retry-after": "5" } });
  }
  const liveViews = views.slice(budgetResources.length);
  const liveJson = {} as CountersJson["live"];
  for (const l of live) {
    const view = l.resource ? liveViews.shift() : undefined;
    liveJson[l.name] = l.resource && view ? { limit: l.resource.limit, ...view } : null;
  }
  const body: CountersJson = {
    object: "counters",
    scope,
    scope_id: scopeId,
    budgets: rows.map((row, i) => {
      const view = views[i] ?? { used: 0, leased: 0, free: row.amount };
      return { budget: budgetJson(row), used: view.used, leased: view.leased, free: view.free, remaining: view.free };
    }),
    limits,
    live: liveJson,
  };
  return c.json(body);
});
