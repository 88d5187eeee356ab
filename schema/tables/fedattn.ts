import { bigint, boolean, doublePrecision, index, integer, pgTable, text, timestamp } from "drizzle-orm/pg-core";

/**
 * A federated-attention session (docs/fedattn.md), as its Durable Object last reported it. Written
 * off the request path (a Redis outbox the scheduled job drains): each change of the session queues
 * a full snapshot with a higher `version`, and a snapshot older than the row is ignored, so the rows
 * come out right whatever order the snapshots arrive in.
 */
export const fedattnSessions = pgTable(
  "fedattn_sessions",
  {
    id: text("id").primaryKey(),
    initiator: text("initiator").notNull(),
    /** Every node that took part, in the order they joined (those that left too). */
    participants: text("participants").array().notNull(),
    /** Participants that left while the session went on (not the last one out, whose leaving ended it). */
    departed: text("departed").array().notNull().default([]),
    syncInterval: integer("sync_interval").notNull(),
    privacyMode: boolean("privacy_mode").notNull(),
    startedAt: timestamp("started_at", { withTimezone: true }).notNull(),
    endedAt: timestamp("ended_at", { withTimezone: true }),
    totalSyncs: integer("total_syncs").notNull().default(0),
    /** Mean time the coordinator took per aggregate (ms), null before the first sync. */
    averageSyncLatencyMs: doublePrecision("average_sync_latency_ms"),
    /** active, ended (by a participant or when the last one left) or expired (idle past the timeout). */
    status: text("status").$type<"active" | "ended" | "expired">().notNull(),
    /** The session object's change counter: a snapshot is applied only when it is newer than the row. */
    version: integer("version").notNull(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull(),
  },
  (t) => [index("fedattn_sessions_started_idx").on(t.startedAt)],
);

/** One participant's contribution to a sync (its K and V for a block range), never the tensors themselves. */
export const fedattnContributions = pgTable(
  "fedattn_contributions",
  {
    id: text("id").primaryKey(),
    sessionId: text("session_id").notNull(),
    participant: text("participant").notNull(),
    blockStart: integer("block_start").notNull(),
    blockEnd: integer("block_end").notNull(),
    /** Size of the message as received (header and both tensors). */
    sizeBytes: bigint("size_bytes", { mode: "number" }).notNull(),
    dtype: text("dtype").$type<"float32" | "float16">().notNull(),
    /** The gateway's time for the call: signature, decoding and hand-over to the session. */
    latencyMs: integer("latency_ms").notNull(),
    weight: doublePrecision("weight").notNull(),
    at: timestamp("at", { withTimezone: true }).notNull(),
  },
  (t) => [index("fedattn_contributions_session_idx").on(t.sessionId, t.at)],
);
