import { bigint, boolean, index, integer, pgTable, text, timestamp } from "drizzle-orm/pg-core";

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
    status: text("status", { enum: ["ok", "error", "cancelled"] }).notNull(),
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
