import { bigint, boolean, index, integer, pgTable, primaryKey, text, timestamp } from "drizzle-orm/pg-core";

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
    ttftMs: integer("ttft_ms"),
    latencyMs: integer("latency_ms").notNull(),
    costMicros: bigint("cost_micros", { mode: "number" }).notNull().default(0),
    errorCode: text("error_code"),
  },
  (t) => [index("usage_records_tenant_at_idx").on(t.tenantId, t.at), index("usage_records_key_at_idx").on(t.apiKeyId, t.at)],
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
    costMicros: bigint("cost_micros", { mode: "number" }).notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.hour, t.tenantId, t.environmentId, t.apiKeyId, t.model] }), index("usage_hourly_tenant_hour_idx").on(t.tenantId, t.hour)],
);
