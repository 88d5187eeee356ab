import { sql } from "drizzle-orm";
import { bigint, boolean, index, integer, jsonb, pgTable, primaryKey, text, timestamp, uniqueIndex } from "drizzle-orm/pg-core";

/** An organisation that owns environments and, through them, API keys. */
export const tenants = pgTable("tenants", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  status: text("status", { enum: ["active", "suspended"] }).notNull().default("active"),
  plan: text("plan").notNull().default("free"),
  /** Stripe customer (`cus_…`) whose payments and subscription drive this tenant's status and plan. */
  stripeCustomerId: text("stripe_customer_id").unique(),
  /** `created` of the last payment event applied to the status: older events arriving late are ignored. */
  paymentEventAt: timestamp("payment_event_at", { withTimezone: true }),
  /** `created` of the last subscription event applied to the plan. */
  subscriptionEventAt: timestamp("subscription_event_at", { withTimezone: true }),
  /** Usage up to this instant is billed (end of the period of the last paid invoice). */
  billedThrough: timestamp("billed_through", { withTimezone: true }),
  /** Conversation audit: regexes whose matches are replaced with [REDACTED] before a conversation is stored (null: none). */
  auditRedactions: text("audit_redactions").array(),
  /** Conversation audit: days a conversation is kept before the scheduled job deletes it (null: kept). */
  auditRetentionDays: integer("audit_retention_days"),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});

/** Stripe webhook events already handled (deduplication by event id; Stripe delivers at least once). */
export const stripeEvents = pgTable("stripe_events", {
  id: text("id").primaryKey(),
  type: text("type").notNull(),
  /** The event's own `created` (Stripe's clock). */
  createdAt: timestamp("created_at", { withTimezone: true }).notNull(),
  receivedAt: timestamp("received_at", { withTimezone: true }).notNull().defaultNow(),
  /** What handling did: applied, ignored (unknown type or older than the state), or no tenant. */
  outcome: text("outcome").notNull(),
});

/** A tenant's environment (dev, staging, prod); may be pinned to one region. */
export const environments = pgTable(
  "environments",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    pinnedRegion: text("pinned_region"),
    /** Node-choice strategy for this environment's requests (null: the model's, else least-load). */
    routingStrategy: text("routing_strategy", { enum: ["least-load", "prefix-affinity", "round-robin", "latency", "random"] }),
    /** Regions a request may ask for with the x-switchyard-region header (null: none; pinned environments never leave their region). */
    regionOverrides: text("region_overrides").array(),
    /** Conversation audit of this environment's inference requests: off, metadata (one row per request, no bodies) or full (with bodies). */
    auditMode: text("audit_mode", { enum: ["off", "metadata", "full"] }).notNull().default("off"),
    /** The response and embeddings caches (docs/caching.md) serve this environment's requests; false: every request goes to a GPU. */
    cacheEnabled: boolean("cache_enabled").notNull().default(true),
    /** Scheduling class of this environment's requests (null: standard); a key's own class wins (docs/priority.md). */
    priorityClass: text("priority_class", { enum: ["interactive", "standard", "batch"] }),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex("environments_tenant_name_idx").on(t.tenantId, t.name)],
);

/** An API key, stored only as the SHA-256 of the full key plus a short visible prefix. */
export const apiKeys = pgTable(
  "api_keys",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id, { onDelete: "cascade" }),
    environmentId: text("environment_id")
      .notNull()
      .references(() => environments.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    prefix: text("prefix").notNull(),
    hash: text("hash").notNull(),
    scopes: text("scopes").array().notNull().default(sql`ARRAY['chat','embeddings']::text[]`),
    allowedModels: text("allowed_models").array(),
    /** Scheduling class of this key's requests (null: its environment's); a request may only lower it (docs/priority.md). */
    priorityClass: text("priority_class", { enum: ["interactive", "standard", "batch"] }),
    expiresAt: timestamp("expires_at", { withTimezone: true }),
    revokedAt: timestamp("revoked_at", { withTimezone: true }),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex("api_keys_hash_idx").on(t.hash), index("api_keys_environment_idx").on(t.environmentId)],
);

/** Who did what, for every administrative change. */
export const auditLogs = pgTable(
  "audit_logs",
  {
    id: text("id").primaryKey(),
    at: timestamp("at", { withTimezone: true }).notNull().defaultNow(),
    actor: text("actor").notNull(),
    action: text("action").notNull(),
    targetType: text("target_type").notNull(),
    targetId: text("target_id").notNull(),
    tenantId: text("tenant_id"),
    details: jsonb("details").$type<Record<string, unknown>>().notNull().default({}),
    success: boolean("success").notNull().default(true),
  },
  (t) => [index("audit_logs_at_idx").on(t.at), index("audit_logs_target_idx").on(t.targetType, t.targetId)],
);

/**
 * Per-entity rate-limit overrides. `scope` is global, tenant, environment or key; `scopeId` is the
 * entity id ("global" for the global scope). A null value keeps the default from configuration.
 */
export const limitOverrides = pgTable(
  "limit_overrides",
  {
    scope: text("scope", { enum: ["global", "tenant", "environment", "key"] }).notNull(),
    scopeId: text("scope_id").notNull(),
    rpm: integer("rpm"),
    tpm: integer("tpm"),
    concurrency: integer("concurrency"),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.scope, t.scopeId] })],
);

/**
 * Budgets and quotas of a tenant, environment or key: a cap on tokens, spend (micro-USD) or
 * requests per day, per month or in total. Enforced atomically at admission (limits/budgets.ts).
 */
export const budgets = pgTable(
  "budgets",
  {
    id: text("id").primaryKey(),
    scope: text("scope", { enum: ["tenant", "environment", "key"] }).notNull(),
    scopeId: text("scope_id").notNull(),
    kind: text("kind", { enum: ["tokens", "spend", "requests"] }).notNull(),
    period: text("period", { enum: ["day", "month", "total"] }).notNull(),
    /** Tokens, micro-USD or requests. */
    amount: bigint("amount", { mode: "number" }).notNull(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex("budgets_scope_kind_period_idx").on(t.scope, t.scopeId, t.kind, t.period)],
);
