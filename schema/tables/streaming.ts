import { integer, pgTable, text, timestamp } from "drizzle-orm/pg-core";

/**
 * Agent streaming profiles (docs/streaming-profiles.md) set by operators. The built-in voice,
 * copilot and gui profiles live in code; a row with one of their names overrides it, any other
 * name adds a profile served at /v1/agents/stream?type=<name>.
 */
export const streamProfiles = pgTable("stream_profiles", {
  name: text("name").primaryKey(),
  /** Completion tokens per content chunk sent to the client. */
  chunkTokens: integer("chunk_tokens").notNull(),
  /** The whole stream's time limit, from the moment the node receives the request. */
  timeoutMs: integer("timeout_ms").notNull(),
  /** Tokens held between the engine and the client before the engine is paused (back-pressure). */
  bufferTokens: integer("buffer_tokens").notNull(),
  /** Least time between two content chunks. */
  intervalMs: integer("interval_ms").notNull(),
  updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
});
