/** JSON shapes of the admin API (snake_case, ISO timestamps), and the row → JSON presenters. */
import type { apiKeys, auditLogs, budgets, creditGrants, environments, reconciliations, tenants } from "../../../schema/tables/index.ts";
import type { PriorityClass } from "../priority/class.ts";
import type { RoutingStrategy } from "../routing/snapshot.ts";

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
  /** Conversation audit: regexes replaced with [REDACTED] before a conversation is stored (docs/audit.md). */
  audit_redactions: string[] | null;
  /** Conversation audit: days conversations are kept (null: kept). */
  audit_retention_days: number | null;
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
    audit_redactions: row.auditRedactions,
    audit_retention_days: row.auditRetentionDays,
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
  /** Node-choice strategy of the environment's requests (null: the model's, else least-load). */
  routing_strategy: RoutingStrategy | null;
  /** Regions its requests may ask for with the x-switchyard-region header (null: none). */
  region_overrides: string[] | null;
  /** Conversation audit of its inference requests: off, metadata or full (docs/audit.md). */
  audit_mode: "off" | "metadata" | "full";
  /** Whether the response and embeddings caches serve its requests (docs/caching.md). */
  cache_enabled: boolean;
  /** Scheduling class of its keys' requests unless a key sets its own (null: standard; docs/priority.md). */
  priority_class: PriorityClass | null;
  created_at: string;
}

/** Presents an environment row. */
export function environmentJson(row: typeof environments.$inferSelect): EnvironmentJson {
  return {
    object: "environment",
    id: row.id,
    tenant_id: row.tenantId,
    name: row.name,
    pinned_region: row.pinnedRegion,
    routing_strategy: row.routingStrategy,
    region_overrides: row.regionOverrides,
    audit_mode: row.auditMode,
    cache_enabled: row.cacheEnabled,
    priority_class: row.priorityClass,
    created_at: row.createdAt.toISOString(),
  };
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
  /** Scheduling class of its requests (null: its environment's; docs/priority.md). */
  priority_class: PriorityClass | null;
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
    priority_class: row.priorityClass,
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
  /** Per budget, the current period: used (settled and in flight outside leases), leased (held by isolates), free; remaining = free. */
  budgets: { budget: BudgetJson; used: number; leased: number; free: number; remaining: number }[];
  limits: LimitsJson;
  /** The scope's live counters for its effective limits (null: unlimited, or no such counter at this layer). */
  live: {
    requests_per_minute: LiveCounterJson | null;
    tokens_per_minute: LiveCounterJson | null;
    concurrency: LiveCounterJson | null;
  };
}

/** One limit's live counter across the deployment (limits/lease-view.ts). */
export interface LiveCounterJson {
  limit: number;
  used: number;
  leased: number;
  free: number;
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

/** One node's reconciliation over one window. Drift = engine − metered (positive: the engine counted tokens nobody was billed for). */
export interface ReconciliationJson {
  object: "reconciliation";
  id: string;
  node_id: string;
  window_start: string;
  window_end: string;
  engine_prompt_tokens: number;
  engine_generation_tokens: number;
  metered_prompt_tokens: number;
  metered_completion_tokens: number;
  drift_prompt_tokens: number;
  drift_generation_tokens: number;
  /** (|drift_prompt| + |drift_generation|) / engine tokens. */
  drift_ratio: number;
  alert: boolean;
  /** An engine restarted (or appeared) in the window: its tokens before that are unknown. */
  engine_restarted: boolean;
  created_at: string;
}

/** Presents a reconciliation row. */
export function reconciliationJson(row: typeof reconciliations.$inferSelect): ReconciliationJson {
  return {
    object: "reconciliation",
    id: row.id,
    node_id: row.nodeId,
    window_start: row.windowStart.toISOString(),
    window_end: row.windowEnd.toISOString(),
    engine_prompt_tokens: row.enginePromptTokens,
    engine_generation_tokens: row.engineGenerationTokens,
    metered_prompt_tokens: row.meteredPromptTokens,
    metered_completion_tokens: row.meteredCompletionTokens,
    drift_prompt_tokens: row.driftPromptTokens,
    drift_generation_tokens: row.driftGenerationTokens,
    drift_ratio: row.driftRatio,
    alert: row.alert,
    engine_restarted: row.engineRestarted,
    created_at: row.createdAt.toISOString(),
  };
}

/** What a reconciliation run did with one node. */
export interface ReconcileNodeJson {
  node_id: string;
  outcome: "reconciled" | "baseline" | "no_counters" | "no_new_sample" | "usage_pending";
  /** The row written (outcome `reconciled`). */
  reconciliation_id?: string;
  /** Start of the node's first window (outcome `baseline`). */
  sampled_at?: string;
  /** Usage events of the window still in Redis (outcome `usage_pending`). */
  events?: number;
}

/** The answer of `POST /admin/reconciliation/run`. */
export interface ReconcileRunJson {
  object: "reconciliation.run";
  /** Usage events moved from Redis to Postgres before reconciling. */
  flushed: number;
  /** The rows written by this run. */
  data: ReconciliationJson[];
  nodes: ReconcileNodeJson[];
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
