import { boolean, index, integer, pgTable, text, timestamp } from "drizzle-orm/pg-core";

/**
 * Conversation audit (docs/audit.md): one row per inference request of an environment whose
 * `audit_mode` is `metadata` or `full`; bodies only in `full`, redacted by the tenant's rules before
 * they are written. `id` is the gateway's request id (the flush inserts idempotently by it).
 */
export const conversations = pgTable(
  "conversations",
  {
    id: text("id").primaryKey(),
    at: timestamp("at", { withTimezone: true }).notNull(),
    endedAt: timestamp("ended_at", { withTimezone: true }).notNull(),
    tenantId: text("tenant_id").notNull(),
    environmentId: text("environment_id").notNull(),
    apiKeyId: text("api_key_id").notNull(),
    mode: text("mode", { enum: ["metadata", "full"] }).notNull(),
    endpoint: text("endpoint").notNull(),
    model: text("model").notNull(),
    nodeId: text("node_id"),
    status: text("status").notNull(),
    httpStatus: integer("http_status").notNull(),
    streamed: boolean("streamed").notNull(),
    promptTokens: integer("prompt_tokens").notNull().default(0),
    completionTokens: integer("completion_tokens").notNull().default(0),
    /** The request body as the client sent it (full mode), at most 1 MB. */
    requestBody: text("request_body"),
    requestTruncated: boolean("request_truncated").notNull().default(false),
    /** The response body (full mode): JSON as sent; for a stream, its SSE `data:` payloads joined by newlines. At most 1 MB. */
    responseBody: text("response_body"),
    responseTruncated: boolean("response_truncated").notNull().default(false),
  },
  (t) => [index("conversations_tenant_at_idx").on(t.tenantId, t.at), index("conversations_at_idx").on(t.at)],
);
