/** The entity a limit, budget or counter belongs to, who may see it, and clean-up of its settings. */
import { and, eq, inArray, or, type SQL } from "drizzle-orm";
import { z } from "zod";
import { apiKeys, budgets, environments, limitOverrides, tenants } from "../../../schema/tables/index.ts";
import { ApiError } from "../errors.ts";
import { budgetCounter } from "../limits/budgets.ts";
import type { AdminActor } from "./auth.ts";
import { canSee, notFound, requireOperator } from "./http.ts";
import type { Affected } from "./invalidate.ts";
import type { AdminDb } from "./store.ts";

/** Layers limits apply at. */
export const limitScope = z.enum(["global", "tenant", "environment", "key"]);
/** Entities budgets belong to. */
export const budgetScope = z.enum(["tenant", "environment", "key"]);
/** A limit layer. */
export type Scope = z.infer<typeof limitScope>;

/** A resolved entity: its owning tenant (null for global) and what a change to it affects. */
export interface ScopeTarget {
  scope: Scope;
  scopeId: string;
  tenantId: string | null;
  affected: Affected;
}

/** The id of the one global entity. */
export const GLOBAL_ID = "global";

/**
 * Finds the entity `scope`/`scopeId` and checks the actor may see it: 404 when it does not exist
 * or belongs to another tenant; the global layer is the operator's only (403).
 */
export async function resolveScope(db: AdminDb, actor: AdminActor, scope: Scope, scopeId: string): Promise<ScopeTarget> {
  if (scope === "global") {
    if (scopeId !== GLOBAL_ID) throw new ApiError("invalid_value", `The global scope has one id: "${GLOBAL_ID}".`, { param: "scope_id" });
    requireOperator(actor, "see or change global limits");
    return { scope, scopeId, tenantId: null, affected: { routing: true } };
  }
  let tenantId: string | undefined;
  if (scope === "tenant") {
    tenantId = (await db.select({ id: tenants.id }).from(tenants).where(eq(tenants.id, scopeId)))[0]?.id;
  } else if (scope === "environment") {
    tenantId = (await db.select({ tenantId: environments.tenantId }).from(environments).where(eq(environments.id, scopeId)))[0]?.tenantId;
  } else {
    tenantId = (await db.select({ tenantId: apiKeys.tenantId }).from(apiKeys).where(eq(apiKeys.id, scopeId)))[0]?.tenantId;
  }
  if (tenantId === undefined || !canSee(actor, tenantId)) throw notFound(scope === "key" ? "api key" : scope, scopeId);
  const affected: Affected = scope === "tenant" ? { tenantId: scopeId } : scope === "environment" ? { environmentId: scopeId } : { keyIds: [scopeId] };
  return { scope, scopeId, tenantId, affected };
}

/**
 * Refuses changes to a tenant's own limits and budgets from a tenant admin key: those are the
 * operator's guard on shared capacity and billing. Tenant admins subdivide them per environment
 * and key (the tenant layer still applies on top).
 */
export function requireWritable(actor: AdminActor, target: ScopeTarget): void {
  if (target.scope === "tenant") requireOperator(actor, "change a tenant's own limits or budgets");
}

/** The condition "scope_id belongs to one of these entities", for a table keyed by (scope, scope_id). */
function ownedBy(
  columns: { scope: typeof limitOverrides.scope | typeof budgets.scope; scopeId: typeof limitOverrides.scopeId | typeof budgets.scopeId },
  owners: { tenantIds: string[]; environmentIds: string[]; keyIds: string[] },
): SQL | undefined {
  const parts: (SQL | undefined)[] = [];
  if (owners.tenantIds.length > 0) parts.push(and(eq(columns.scope, "tenant"), inArray(columns.scopeId, owners.tenantIds)));
  if (owners.environmentIds.length > 0) parts.push(and(eq(columns.scope, "environment"), inArray(columns.scopeId, owners.environmentIds)));
  if (owners.keyIds.length > 0) parts.push(and(eq(columns.scope, "key"), inArray(columns.scopeId, owners.keyIds)));
  return parts.length === 0 ? undefined : or(...parts);
}

/** Budgets of a tenant and of everything under it. */
export async function tenantBudgetFilter(db: AdminDb, tenantId: string): Promise<SQL | undefined> {
  const [envRows, keyRows] = await Promise.all([
    db.select({ id: environments.id }).from(environments).where(eq(environments.tenantId, tenantId)),
    db.select({ id: apiKeys.id }).from(apiKeys).where(eq(apiKeys.tenantId, tenantId)),
  ]);
  return ownedBy(budgets, { tenantIds: [tenantId], environmentIds: envRows.map((r) => r.id), keyIds: keyRows.map((r) => r.id) });
}

/**
 * Deletes the limit overrides and budgets of a tenant or environment and of everything under it,
 * before the entity itself is deleted (they reference it by id only, so no foreign key cascades).
 * Returns the deleted budgets (their Redis counters can go too).
 */
export async function deleteScopedSettings(db: AdminDb, owner: { tenantId: string } | { environmentId: string }): Promise<(typeof budgets.$inferSelect)[]> {
  const envIds =
    "environmentId" in owner
      ? [owner.environmentId]
      : (await db.select({ id: environments.id }).from(environments).where(eq(environments.tenantId, owner.tenantId))).map((r) => r.id);
  const keyWhere = "environmentId" in owner ? eq(apiKeys.environmentId, owner.environmentId) : eq(apiKeys.tenantId, owner.tenantId);
  const keyIds = (await db.select({ id: apiKeys.id }).from(apiKeys).where(keyWhere)).map((r) => r.id);
  const owners = { tenantIds: "tenantId" in owner ? [owner.tenantId] : [], environmentIds: envIds, keyIds };
  const limitsWhere = ownedBy(limitOverrides, owners);
  const budgetsWhere = ownedBy(budgets, owners);
  if (limitsWhere) await db.delete(limitOverrides).where(limitsWhere);
  if (!budgetsWhere) return [];
  return db.delete(budgets).where(budgetsWhere).returning();
}

/** The Redis counter of each budget in its current period (deleted with the budget). */
export function budgetCounterKeys(prefix: string, rows: (typeof budgets.$inferSelect)[], now = new Date()): string[] {
  return rows.flatMap((b) => {
    const key = budgetCounter(prefix, { id: b.id, scope: b.scope, scopeId: b.scopeId, kind: b.kind, period: b.period, amount: b.amount }, now).key;
    // The counter and its capacity leases' records (limits/lease-scripts.ts).
    return [key, `${key}:lease`];
  });
}
