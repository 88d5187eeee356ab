/** JSON shapes of the admin API (snake_case, ISO timestamps), and the row → JSON presenters. */
import type { apiKeys, auditLogs, budgets, creditGrants, environments, tenants } from "../../../schema/tables/index.ts";

function iso(date: Date | null): string | null {
  return date === null ? null : date.toISOString();
}

/** A tenant. */
export interface TenantJson {
  object: "tenant";
  id: string;
  name: string;
  plan: string;
  status: "active" | "suspended";
  /** The Stripe customer whose webhooks drive status and plan (billing/). */
  stripe_customer_id: string | null;
  /** End of the period of the last paid invoice. */
  billed_through: string | null;
  created_at: string;
}

/** Presents a tenant row. */
export function tenantJson(row: typeof tenants.$inferSelect): TenantJson {
  return {
    object: "tenant",
    id: row.id,
    name: row.name,
    plan: row.plan,
    status: row.status,
    stripe_customer_id: row.stripeCustomerId,
    billed_through: iso(row.billedThrough),
    created_at: row.createdAt.toISOString(),
  };
}

/** An environment. */
export interface EnvironmentJson {
  object: "environment";
  id: string;
  tenant_id: string;
  name: string;
  pinned_region: string | null;
  created_at: string;
}

/** Presents an environment row. */
export function environmentJson(row: typeof environments.$inferSelect): EnvironmentJson {
  return { object: "environment", id: row.id, tenant_id: row.tenantId, name: row.name, pinned_region: row.pinnedRegion, created_at: row.createdAt.toISOString() };
}

/** An API key's metadata: never its hash, never the key (only `prefix`, for recognising it). */
export interface ApiKeyJson {
  object: "api_key";
  id: string;
  tenant_id: string;
  environment_id: string;
  name: string;
  prefix: string;
  scopes: string[];
  allowed_models: string[] | null;
  expires_at: string | null;
  revoked_at: string | null;
  created_at: string;
  status: "active" | "revoked" | "expired";
}

/** A key just created or rotated: the only response that carries the full key. */
export interface CreatedApiKeyJson extends ApiKeyJson {
  key: string;
}

/** Presents a key row (the hash is dropped here, so no response can carry it). */
export function apiKeyJson(row: typeof apiKeys.$inferSelect, now = Date.now()): ApiKeyJson {
  const status = row.revokedAt !== null ? "revoked" : row.expiresAt !== null && row.expiresAt.getTime() <= now ? "expired" : "active";
  return {
    object: "api_key",
    id: row.id,
    tenant_id: row.tenantId,
    environment_id: row.environmentId,
    name: row.name,
    prefix: row.prefix,
    scopes: row.scopes,
    allowed_models: row.allowedModels,
    expires_at: iso(row.expiresAt),
    revoked_at: iso(row.revokedAt),
    created_at: row.createdAt.toISOString(),
    status,
  };
}

/** Limits of one layer (null = unlimited). */
export interface LimitsValues {
  rpm: number | null;
  tpm: number | null;
  concurrency: number | null;
}

/** The limits of an entity: the configured defaults, its override, and what applies. */
export interface LimitsJson {
  object: "limits";
  scope: "global" | "tenant" | "environment" | "key";
  scope_id: string;
  defaults: LimitsValues;
  override: LimitsValues | null;
  effective: LimitsValues;
  updated_at: string | null;
}

/** A budget or quota. */
export interface BudgetJson {
  object: "budget";
  id: string;
  scope: "tenant" | "environment" | "key";
  scope_id: string;
  kind: "tokens" | "spend" | "requests";
  period: "day" | "month" | "total";
  amount: number;
  created_at: string;
}

/** Presents a budget row. */
export function budgetJson(row: typeof budgets.$inferSelect): BudgetJson {
  return { object: "budget", id: row.id, scope: row.scope, scope_id: row.scopeId, kind: row.kind, period: row.period, amount: row.amount, created_at: row.createdAt.toISOString() };
}

/** Usage of an entity's budgets in their current periods, and its limits. */
export interface CountersJson {
  object: "counters";
  scope: "global" | "tenant" | "environment" | "key";
  scope_id: string;
  budgets: { budget: BudgetJson; used: number; remaining: number }[];
  limits: LimitsJson;
}

/** An audit log entry. */
export interface AuditJson {
  object: "audit_log";
  id: string;
  at: string;
  actor: string;
  action: string;
  target_type: string;
  target_id: string;
  tenant_id: string | null;
  success: boolean;
  details: Record<string, unknown>;
}

/** Presents an audit row. */
export function auditJson(row: typeof auditLogs.$inferSelect): AuditJson {
  return {
    object: "audit_log",
    id: row.id,
    at: row.at.toISOString(),
    actor: row.actor,
    action: row.action,
    target_type: row.targetType,
    target_id: row.targetId,
    tenant_id: row.tenantId,
    success: row.success,
    details: row.details,
  };
}

/** A credit grant (free tier, promotion, adjustment) and what is left of it. */
export interface CreditGrantJson {
  object: "credit_grant";
  id: string;
  tenant_id: string;
  kind: "free_tier" | "promotion" | "adjustment";
  amount_micros: number;
  remaining_micros: number;
  /** Used micro-USD: amount − remaining. */
  used_micros: number;
  expires_at: string | null;
  note: string;
  created_at: string;
}

/** Presents a credit grant row. */
export function creditGrantJson(row: typeof creditGrants.$inferSelect): CreditGrantJson {
  return {
    object: "credit_grant",
    id: row.id,
    tenant_id: row.tenantId,
    kind: row.kind,
    amount_micros: row.amountMicros,
    remaining_micros: row.remainingMicros,
    used_micros: row.amountMicros - row.remainingMicros,
    expires_at: iso(row.expiresAt),
    note: row.note,
    created_at: row.createdAt.toISOString(),
  };
}
