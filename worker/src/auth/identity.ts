import { and, eq, or } from "drizzle-orm";
import { apiKeys, budgets, environments, limitOverrides, tenants } from "../../../schema/tables/index.ts";
import type { BudgetEntry } from "../limits/budgets.ts";
import type { LayerLimits } from "../limits/types.ts";
import type { Db } from "../platform/db.ts";
import { DEFAULT_PRIORITY_CLASS, type PriorityClass } from "../priority/class.ts";
import type { RoutingStrategy } from "../routing/snapshot.ts";

/** What the gateway knows about a caller once its key is resolved. Cached in the isolate and Redis. */
export interface KeyIdentity {
  keyId: string;
  keyPrefix: string;
  tenantId: string;
  environmentId: string;
  tenantStatus: "active" | "suspended";
  scopes: string[];
  allowedModels: string[] | null;
  /** Unix ms, or null for keys that never expire. */
  expiresAt: number | null;
  revoked: boolean;
  pinnedRegion: string | null;
  /** The environment's node-choice strategy (null: the model's, else least-load). Optional: entries cached before it existed. */
  routingStrategy?: RoutingStrategy | null;
  /** Regions the environment's requests may ask for with x-switchyard-region (null: none). */
  regionOverrides?: string[] | null;
  /** The environment's conversation audit (docs/audit.md). Optional: entries cached before it existed are off. */
  auditMode?: "off" | "metadata" | "full";
  /** The environment's response and embeddings caches (docs/caching.md). Optional: entries cached before it existed are on. */
  cacheEnabled?: boolean;
  /** Effective scheduling class: the key's ?? the environment's ?? standard (docs/priority.md). Optional: entries cached before it existed are standard. */
  priorityClass?: PriorityClass;
  /** Limit overrides of the tenant, environment and key (null fields keep the configured default). */
  overrides: Partial<Record<"tenant" | "environment" | "key", Partial<LayerLimits>>>;
  /** Budgets and quotas of the tenant, environment and key. */
  budgets: BudgetEntry[];
}

/** A cache entry: a known key, or a remembered miss (so unknown keys do not reach Postgres each time). */
export type KeyCacheEntry = { found: true; identity: KeyIdentity } | { found: false };

/** Loads a key by hash from Postgres (cache miss path only). */
export async function loadKeyIdentity(db: Db, hash: string): Promise<KeyCacheEntry> {
  const rows = await db
    .select({
      keyId: apiKeys.id,
      keyPrefix: apiKeys.prefix,
      tenantId: apiKeys.tenantId,
      environmentId: apiKeys.environmentId,
      tenantStatus: tenants.status,
      scopes: apiKeys.scopes,
      allowedModels: apiKeys.allowedModels,
      expiresAt: apiKeys.expiresAt,
      revokedAt: apiKeys.revokedAt,
      pinnedRegion: environments.pinnedRegion,
      routingStrategy: environments.routingStrategy,
      regionOverrides: environments.regionOverrides,
      auditMode: environments.auditMode,
      cacheEnabled: environments.cacheEnabled,
      keyPriorityClass: apiKeys.priorityClass,
      environmentPriorityClass: environments.priorityClass,
    })
    .from(apiKeys)
    .innerJoin(tenants, eq(tenants.id, apiKeys.tenantId))
    .innerJoin(environments, and(eq(environments.id, apiKeys.environmentId), eq(environments.tenantId, apiKeys.tenantId)))
    .where(eq(apiKeys.hash, hash))
    .limit(1);
  const row = rows[0];
  if (!row) return { found: false };
  const scopes = [
    and(eq(limitOverrides.scope, "tenant"), eq(limitOverrides.scopeId, row.tenantId)),
    and(eq(limitOverrides.scope, "environment"), eq(limitOverrides.scopeId, row.environmentId)),
    and(eq(limitOverrides.scope, "key"), eq(limitOverrides.scopeId, row.keyId)),
  ];
  const budgetScopes = [
    and(eq(budgets.scope, "tenant"), eq(budgets.scopeId, row.tenantId)),
    and(eq(budgets.scope, "environment"), eq(budgets.scopeId, row.environmentId)),
    and(eq(budgets.scope, "key"), eq(budgets.scopeId, row.keyId)),
  ];
  const [overrideRows, budgetRows] = await Promise.all([
    db.select().from(limitOverrides).where(or(...scopes)),
    db.select().from(budgets).where(or(...budgetScopes)),
  ]);
  const overrides: KeyIdentity["overrides"] = {};
  for (const o of overrideRows) {
    if (o.scope === "global") continue;
    overrides[o.scope] = { rpm: o.rpm, tpm: o.tpm, concurrency: o.concurrency };
  }
  return {
    found: true,
    identity: {
      keyId: row.keyId,
      keyPrefix: row.keyPrefix,
      tenantId: row.tenantId,
      environmentId: row.environmentId,
      tenantStatus: row.tenantStatus,
      scopes: row.scopes,
      allowedModels: row.allowedModels,
      expiresAt: row.expiresAt ? row.expiresAt.getTime() : null,
      revoked: row.revokedAt !== null,
      pinnedRegion: row.pinnedRegion,
      routingStrategy: row.routingStrategy,
      regionOverrides: row.regionOverrides,
      auditMode: row.auditMode,
      cacheEnabled: row.cacheEnabled,
      priorityClass: row.keyPriorityClass ?? row.environmentPriorityClass ?? DEFAULT_PRIORITY_CLASS,
      overrides,
      budgets: budgetRows.map((b) => ({ id: b.id, scope: b.scope, scopeId: b.scopeId, kind: b.kind, period: b.period, amount: b.amount })),
    },
  };
}

/** Redis key under which a key's identity is cached. Admin tools delete it on any change. */
export function keyCacheKey(prefix: string, hash: string): string {
  return `${prefix}key:${hash}`;
}
