import { sql } from "drizzle-orm";
import { type AnyPgColumn, boolean, doublePrecision, index, integer, jsonb, numeric, pgTable, text, timestamp } from "drizzle-orm/pg-core";

/** The model catalogue: what the gateway offers and what it costs. */
export const models = pgTable("models", {
  id: text("id").primaryKey(),
  family: text("family").notNull().default(""),
  /** chat (generates text), embedding (pooling: embeddings, rerank, score) or transcription (speech to text: /v1/audio/transcriptions and translations). */
  kind: text("kind", { enum: ["chat", "embedding", "transcription"] }).notNull().default("chat"),
  contextLength: integer("context_length").notNull(),
  inputPricePerMTokens: numeric("input_price_per_m_tokens", { precision: 12, scale: 6 }).notNull().default("0"),
  outputPricePerMTokens: numeric("output_price_per_m_tokens", { precision: 12, scale: 6 }).notNull().default("0"),
  cachedInputPricePerMTokens: numeric("cached_input_price_per_m_tokens", { precision: 12, scale: 6 }),
  /** USD per minute of audio (transcription models), on top of any token prices; null: audio is not priced by duration. */
  audioPricePerMinute: numeric("audio_price_per_minute", { precision: 12, scale: 6 }),
  active: boolean("active").notNull().default(true),
  /** Node-choice strategy for this model (null: least-load); an environment's own strategy wins. */
  routingStrategy: text("routing_strategy", { enum: ["least-load", "prefix-affinity", "round-robin", "latency", "random"] }),
  /** For a LoRA adapter: the catalogue model it applies to (a chat model that is not itself an adapter); null otherwise. */
  baseModel: text("base_model").references((): AnyPgColumn => models.id),
  /** For a LoRA adapter: where an engine loads it from at runtime (vLLM's `lora_path`: a folder or a hub id); null when not loadable on demand. */
  adapterSource: text("adapter_source"),
  /** Other names this model answers to on every route (e.g. Ollama's `phi3` for `phi3:latest`); unique across the catalogue and never another model's id. */
  aliases: text("aliases").array().notNull().default(sql`'{}'::text[]`),
  /** A response or embedding served from the gateway's cache is priced at this share of what the GPU would have cost (0: free, 1: full price). */
  cacheHitPriceFactor: numeric("cache_hit_price_factor", { precision: 6, scale: 4 }).notNull().default("0"),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});

/**
 * A region where GPU nodes run; coordinates drive nearest-region routing. A region first seen in a
 * heartbeat is created without coordinates until an admin sets them.
 */
export const regions = pgTable("regions", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  latitude: doublePrecision("latitude"),
  longitude: doublePrecision("longitude"),
  priceMultiplier: numeric("price_multiplier", { precision: 8, scale: 4 }).notNull().default("1"),
  active: boolean("active").notNull().default(true),
});

/**
 * A GPU host running the backplane. Its signing secret is never stored: it is derived from the
 * gateway's NODE_SIGNING_SECRET, the node id and `secret_version` (schema/contracts/signing.ts).
 */
export const nodes = pgTable("nodes", {
  id: text("id").primaryKey(),
  regionId: text("region_id")
    .notNull()
    .references(() => regions.id),
  url: text("url").notNull(),
  models: text("models").array().notNull(),
  status: text("status", { enum: ["active", "draining", "disabled"] }).notNull().default("active"),
  secretVersion: integer("secret_version").notNull().default(1),
  /** Status the node reported in its last heartbeat (the live value is in Redis). */
  reportedStatus: text("reported_status", { enum: ["ready", "degraded", "draining", "unhealthy"] }),
  /** Null for nodes that never sent a heartbeat: those are static entries, routed without liveness checks. */
  lastHeartbeatAt: timestamp("last_heartbeat_at", { withTimezone: true }),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});

/** Spot / preemption notices reported by backplanes. */
export const spotEvents = pgTable(
  "spot_events",
  {
    id: text("id").primaryKey(),
    nodeId: text("node_id").notNull(),
    provider: text("provider", { enum: ["aws", "gcp", "azure"] }).notNull(),
    action: text("action").notNull(),
    deadline: timestamp("deadline", { withTimezone: true }),
    noticedAt: timestamp("noticed_at", { withTimezone: true }).notNull(),
    receivedAt: timestamp("received_at", { withTimezone: true }).notNull().defaultNow(),
    detail: jsonb("detail").$type<Record<string, unknown>>().notNull().default({}),
  },
  (t) => [index("spot_events_node_idx").on(t.nodeId, t.receivedAt)],
);

/** A node's health history: one row per change of the status it reports (or of its staleness). */
export const healthChecks = pgTable(
  "health_checks",
  {
    id: text("id").primaryKey(),
    nodeId: text("node_id").notNull(),
    at: timestamp("at", { withTimezone: true }).notNull(),
    /** ready, degraded, draining, unhealthy, or stale (missed three heartbeats). */
    status: text("status").notNull(),
    previousStatus: text("previous_status"),
    /** Load when it changed: in flight, capacity, waiting, KV cache use, recent TTFT. */
    detail: jsonb("detail").$type<Record<string, unknown>>().notNull().default({}),
  },
  (t) => [index("health_checks_node_idx").on(t.nodeId, t.at)],
);

/**
 * Reserved capacity: a tenant's tokens per second on a model, served first from the nodes it
 * reserves; when capacity is short, ordinary traffic is shed before it.
 */
export const capacityReservations = pgTable(
  "capacity_reservations",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id").notNull(),
    model: text("model").notNull(),
    tokensPerSecond: integer("tokens_per_second").notNull(),
    nodeIds: text("node_ids").array().notNull(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index("capacity_reservations_tenant_idx").on(t.tenantId, t.model)],
);
