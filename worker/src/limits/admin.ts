/**
 * `/admin/limits/:scope/:scope_id`: rate-limit overrides of the global layer, a tenant, an
 * environment or a key (`limit_overrides`). A field left out keeps its value; null clears it back to
 * the configured default (LIMIT_* vars). Global limits and a tenant's own limits are the operator's.
 *
 * Reaching the gateway: tenant, environment and key overrides travel in each key's cached identity,
 * so a change drops the Redis cache entries of every key of that tenant, environment or key; global
 * limits travel in the routing snapshot, whose Redis entry is dropped (invalidate.ts). Isolates
 * follow within KEY_CACHE_ISOLATE_SECONDS / ROUTING_CACHE_ISOLATE_SECONDS.
 */
import { and, eq } from "drizzle-orm";
import { Hono } from "hono";
import { z } from "zod";
import { limitOverrides } from "../../../schema/tables/index.ts";
import { ApiError } from "../errors.ts";
import type { Settings } from "../settings.ts";
import { actorName, type AdminEnv } from "../admin/auth.ts";
import { inTransaction, readJson, reading, type AdminContext } from "../admin/http.ts";
import { cacheKeysOf, dropCaches } from "../admin/invalidate.ts";
import { limitScope, requireWritable, resolveScope, type Scope, type ScopeTarget } from "../admin/scope.ts";
import { recordAudit, type AdminDb } from "../admin/store.ts";
import type { LimitsJson, LimitsValues } from "../admin/wire.ts";

const value = z.number().int().min(1).max(2_147_483_647).nullable().optional();
const setBody = z.strictObject({ rpm: value, tpm: value, concurrency: value });
const params = z.object({ scope: limitScope, scope_id: z.string().min(1).max(100) });

type OverrideRow = typeof limitOverrides.$inferSelect;

function values(row: OverrideRow | undefined): LimitsValues | null {
  return row ? { rpm: row.rpm, tpm: row.tpm, concurrency: row.concurrency } : null;
}

/** The limits of an entity: defaults, override and effective values (as limits/admission.ts merges them). */
export function limitsJson(settings: Settings, scope: Scope, scopeId: string, row: OverrideRow | undefined): LimitsJson {
  const defaults = settings.limitDefaults[scope];
  const override = values(row);
  return {
    object: "limits",
    scope,
    scope_id: scopeId,
    defaults,
    override,
    effective: {
      rpm: override?.rpm ?? defaults.rpm,
      tpm: override?.tpm ?? defaults.tpm,
      concurrency: override?.concurrency ?? defaults.concurrency,
    },
    updated_at: row ? row.updatedAt.toISOString() : null,
  };
}

/** The override row of an entity, if any. */
export async function loadOverride(db: AdminDb, scope: Scope, scopeId: string): Promise<OverrideRow | undefined> {
  const [row] = await db.select().from(limitOverrides).where(and(eq(limitOverrides.scope, scope), eq(limitOverrides.scopeId, scopeId)));
  return row;
}

function readParams(c: AdminContext): { scope: Scope; scopeId: string } {
  const result = params.safeParse({ scope: c.req.param("scope"), scope_id: c.req.param("scope_id") });
  if (!result.success) throw new ApiError("invalid_value", "The scope must be global, tenant, environment or key.", { param: "scope" });
  return { scope: result.data.scope, scopeId: result.data.scope_id };
}

/** Writes (or, with nothing left, deletes) an override, audits it and drops the caches it affects. */
async function change(c: AdminContext, action: "limits.set" | "limits.clear", next: (current: LimitsValues | null, target: ScopeTarget) => LimitsValues | null): Promise<Response> {
  const { scope, scopeId } = readParams(c);
  const { row, cacheKeys } = await inTransaction(c, async (db) => {
    const target = await resolveScope(db, c.get("actor"), scope, scopeId);
    requireWritable(c.get("actor"), target);
    const before = await loadOverride(db, scope, scopeId);
    const wanted = next(values(before), target);
    let row: OverrideRow | undefined;
    if (wanted === null || (wanted.rpm === null && wanted.tpm === null && wanted.concurrency === null)) {
      await db.delete(limitOverrides).where(and(eq(limitOverrides.scope, scope), eq(limitOverrides.scopeId, scopeId)));
    } else {
      const set = { ...wanted, updatedAt: new Date() };
      [row] = await db
        .insert(limitOverrides)
        .values({ scope, scopeId, ...set })
        .onConflictDoUpdate({ target: [limitOverrides.scope, limitOverrides.scopeId], set })
        .returning();
    }
    await recordAudit(db, actorName(c.get("actor")), action, scope, scopeId, target.tenantId, { before: values(before), after: values(row) });
    return { row, cacheKeys: await cacheKeysOf(db, c.get("deps").settings.redisPrefix, target.affected) };
  });
  await dropCaches(c, cacheKeys);
  return c.json(limitsJson(c.get("deps").settings, scope, scopeId, row));
}

/** The limit routes, mounted at `/admin/limits`. */
export const limitRoutes = new Hono<AdminEnv>()
  .get("/:scope/:scope_id", async (c) => {
    const { scope, scopeId } = readParams(c);
    const row = await reading(c, async (db) => {
      await resolveScope(db, c.get("actor"), scope, scopeId);
      return loadOverride(db, scope, scopeId);
    });
    return c.json(limitsJson(c.get("deps").settings, scope, scopeId, row));
  })
  .put("/:scope/:scope_id", async (c) => {
    const body = await readJson(c, setBody);
    return change(c, "limits.set", (current, target) => {
      // Concurrency leases are taken at the tenant and key layers only (limits/types.ts).
      if (body.concurrency != null && (target.scope === "global" || target.scope === "environment")) {
        throw new ApiError("invalid_value", "Concurrency limits apply to tenants and keys only.", { param: "concurrency" });
      }
      const pick = (field: keyof LimitsValues) => (body[field] === undefined ? (current?.[field] ?? null) : body[field]);
      return { rpm: pick("rpm"), tpm: pick("tpm"), concurrency: pick("concurrency") };
    });
  })
  .delete("/:scope/:scope_id", (c) => change(c, "limits.clear", () => null));
