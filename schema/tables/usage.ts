import { bigint, boolean, doublePrecision, index, integer, jsonb, pgTable, primaryKey, text, timestamp } from "drizzle-orm/pg-core";
import { tenants } from "./tenancy.ts";

/** One row per request that reached admission, whatever its outcome. `id` is the gateway's request id. */
export const usageRecords = pgTable(
  "usage_records",
  {
    id: text("id").primaryKey(),
    at: timestamp("at", { withTimezone: true }).notNull(),
    tenantId: text("tenant_id").notNull(),
    environmentId: text("environment_id").notNull(),
    apiKeyId: text("api_key_id").notNull(),
    endpoint: text("endpoint").notNull(),
    model: text("model").notNull(),
    regionId: text("region_id"),
    nodeId: text("node_id"),
    /** ok, error (engine failure), cancelled (client went away), rejected (limited or refused at admission, zero tokens). */
    status: text("status", { enum: ["ok", "error", "cancelled", "rejected"] }).notNull(),
    httpStatus: integer("http_status").notNull(),
    streamed: boolean("streamed").notNull(),
    promptTokens: integer("prompt_tokens").notNull().default(0),
    completionTokens: integer("completion_tokens").notNull().default(0),
    cachedPromptTokens: integer("cached_prompt_tokens").notNull().default(0),
    /** Milliseconds of audio a transcription or translation read (measured by the gateway from the upload); 0 otherwise. */
    audioMs: integer("audio_ms").notNull().default(0),
    ttftMs: integer("ttft_ms"),
    latencyMs: integer("latency_ms").notNull(),
    costMicros: bigint("cost_micros", { mode: "number" }).notNull().default(0),
    /** Part of cost_micros paid from credits (credit_grants) when the record was flushed; the rest is billable. */
    creditMicros: bigint("credit_micros", { mode: "number" }).notNull().default(0),
    errorCode: text("error_code"),
    /** The agent streaming profile that cut the stream (voice, copilot, gui or an operator's); null on the ordinary routes. */
    streamProfile: text("stream_profile"),
    /** Served from the gateway's response or embeddings cache: no GPU work; tokens are the cached answer's, priced by the model's cache_hit_price_factor. */
    cacheHit: boolean("cache_hit").notNull().default(false),
    /** The council vote this specialist call was part of (council_votes.id); null otherwise. */
    voteId: text("vote_id"),
  },
  (t) => [
    index("usage_records_tenant_at_idx").on(t.tenantId, t.at),
    index("usage_records_key_at_idx").on(t.apiKeyId, t.at),
    // The operator's statistics over all tenants read a time window (usage/stats.ts).
    index("usage_records_at_idx").on(t.at),
    // Reconciliation sums each node's tokens per window.
    index("usage_records_node_at_idx").on(t.nodeId, t.at),
  ],
);

/**
 * Hourly rollups of usage_records, updated in the same transaction as the records they sum, only
 * for records inserted by that transaction (so redelivered events never count twice).
 */
export const usageHourly = pgTable(
  "usage_hourly",
  {
    hour: timestamp("hour", { withTimezone: true }).notNull(),
    tenantId: text("tenant_id").notNull(),
    environmentId: text("environment_id").notNull(),
    apiKeyId: text("api_key_id").notNull(),
    model: text("model").notNull(),
    requests: integer("requests").notNull().default(0),
    promptTokens: bigint("prompt_tokens", { mode: "number" }).notNull().default(0),
    completionTokens: bigint("completion_tokens", { mode: "number" }).notNull().default(0),
    cachedPromptTokens: bigint("cached_prompt_tokens", { mode: "number" }).notNull().default(0),
    audioMs: bigint("audio_ms", { mode: "number" }).notNull().default(0),
    /** Requests of the hour served from the gateway's cache. */
    cacheHits: integer("cache_hits").notNull().default(0),
    costMicros: bigint("cost_micros", { mode: "number" }).notNull().default(0),
    creditMicros: bigint("credit_micros", { mode: "number" }).notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.hour, t.tenantId, t.environmentId, t.apiKeyId, t.model] }), index("usage_hourly_tenant_hour_idx").on(t.tenantId, t.hour)],
);

/**
 * Credits granted to a tenant (free tier, promotions, goodwill adjustments). The flush draws usage
 * costs from them, soonest-expiring first, before anything is billable; `remaining_micros` is what
 * is left.
 */
export const creditGrants = pgTable(
  "credit_grants",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    kind: text("kind", { enum: ["free_tier", "promotion", "adjustment"] }).notNull(),
    amountMicros: bigint("amount_micros", { mode: "number" }).notNull(),
    remainingMicros: bigint("remaining_micros", { mode: "number" }).notNull(),
    /** Usage at or after this instant is not paid from the grant; null = never expires. */
    expiresAt: timestamp("expires_at", { withTimezone: true }),
    note: text("note").notNull().default(""),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index("credit_grants_tenant_idx").on(t.tenantId, t.expiresAt)],
);

/** Lifetime token counters of one engine, as its backplane reported them in a heartbeat. */
export interface EngineTokenCounters {
  promptTokens: number;
  generationTokens: number;
}

/**
 * The engines' token counters of a node when it was last reconciled: the start of its next
 * reconciliation window. Keyed by engine id so an engine restart (a counter going down) is seen.
 */
export const nodeTokenCounters = pgTable("node_token_counters", {
  nodeId: text("node_id").primaryKey(),
  /** Gateway clock when the heartbeat carrying these counters arrived. */
  sampledAt: timestamp("sampled_at", { withTimezone: true }).notNull(),
  engines: jsonb("engines").$type<Record<string, EngineTokenCounters>>().notNull(),
});

/**
 * One reconciliation of a node over a window: tokens the engines counted against tokens the gateway
 * metered for requests served by that node. Drift = engine − metered; `alert` when it exceeds the
 * configured threshold.
 */
export const reconciliations = pgTable(
  "reconciliations",
  {
    id: text("id").primaryKey(),
    nodeId: text("node_id").notNull(),
    windowStart: timestamp("window_start", { withTimezone: true }).notNull(),
    windowEnd: timestamp("window_end", { withTimezone: true }).notNull(),
    enginePromptTokens: bigint("engine_prompt_tokens", { mode: "number" }).notNull(),
    engineGenerationTokens: bigint("engine_generation_tokens", { mode: "number" }).notNull(),
    meteredPromptTokens: bigint("metered_prompt_tokens", { mode: "number" }).notNull(),
    meteredCompletionTokens: bigint("metered_completion_tokens", { mode: "number" }).notNull(),
    driftPromptTokens: bigint("drift_prompt_tokens", { mode: "number" }).notNull(),
    driftGenerationTokens: bigint("drift_generation_tokens", { mode: "number" }).notNull(),
    /** |drift| / engine tokens, over prompt and generation together (0 when both are 0). */
    driftRatio: doublePrecision("drift_ratio").notNull(),
    alert: boolean("alert").notNull(),
    /** An engine's counter went down (restart) in the window: its tokens before the restart are unknown. */
    engineRestarted: boolean("engine_restarted").notNull().default(false),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index("reconciliations_node_idx").on(t.nodeId, t.windowEnd), index("reconciliations_alert_idx").on(t.alert, t.windowEnd)],
);
