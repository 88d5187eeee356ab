/**
 * Federated-attention records (docs/fedattn.md#records): session snapshots and contributions go to
 * Postgres off the request path, through a Redis outbox the scheduled job drains (platform/outbox.ts).
 * Sessions are queued by their Durable Object as full snapshots with a rising `version`; contributions
 * by the route that received them. Neither carries a tensor.
 */
import type { Redis } from "@upstash/redis/cloudflare";
import { sql } from "drizzle-orm";
import { fedattnContributions, fedattnSessions } from "../../../schema/tables/index.ts";
import type { Db } from "../platform/db.ts";
import { drain, enqueue } from "../platform/outbox.ts";

/** A session as its object last saw it. */
export interface SessionSnapshot {
  kind: "session";
  id: string;
  initiator: string;
  /** Every node that took part, in join order. */
  participants: string[];
  /** Those that left while the session went on. */
  departed: string[];
  syncInterval: number;
  privacyMode: boolean;
  startedAt: number;
  endedAt: number | null;
  totalSyncs: number;
  averageSyncLatencyMs: number | null;
  status: "active" | "ended" | "expired";
  version: number;
  updatedAt: number;
}

/** One contribution as received. */
export interface ContributionRecord {
  kind: "contribution";
  id: string;
  sessionId: string;
  participant: string;
  blockStart: number;
  blockEnd: number;
  sizeBytes: number;
  dtype: "float32" | "float16";
  latencyMs: number;
  weight: number;
  at: number;
}

/** What the outbox holds. */
export type FedattnRecord = SessionSnapshot | ContributionRecord;

/** Redis list of records not yet in Postgres. */
export function fedattnOutboxKey(prefix: string): string {
  return `${prefix}outbox:fedattn`;
}

/** Queues one record (hand the promise to waitUntil). Rejects when Redis does not take it. */
export function enqueueRecord(redis: Redis, prefix: string, record: FedattnRecord): Promise<void> {
  return enqueue(redis, fedattnOutboxKey(prefix), record);
}

/** Writes one batch: the newest snapshot of each session (older than the row: ignored) and the contributions (idempotent by id). */
export async function writeRecordBatch(db: Db, items: FedattnRecord[]): Promise<void> {
  const newest = new Map<string, SessionSnapshot>();
  const contributions: ContributionRecord[] = [];
  for (const item of items) {
    if (item.kind === "contribution") contributions.push(item);
    else if ((newest.get(item.id)?.version ?? -1) < item.version) newest.set(item.id, item);
  }
  if (newest.size > 0) {
    const rows = [...newest.values()].map((s) => ({
      id: s.id,
      initiator: s.initiator,
      participants: s.participants,
      departed: s.departed,
      syncInterval: s.syncInterval,
      privacyMode: s.privacyMode,
      startedAt: new Date(s.startedAt),
      endedAt: s.endedAt === null ? null : new Date(s.endedAt),
      totalSyncs: s.totalSyncs,
      averageSyncLatencyMs: s.averageSyncLatencyMs,
      status: s.status,
      version: s.version,
      updatedAt: new Date(s.updatedAt),
    }));
    const excluded = (column: string) => sql.raw(`excluded.${column}`);
    await db
      .insert(fedattnSessions)
      .values(rows)
      .onConflictDoUpdate({
        target: fedattnSessions.id,
        set: {
          participants: excluded("participants"),
          departed: excluded("departed"),
          endedAt: excluded("ended_at"),
          totalSyncs: excluded("total_syncs"),
          averageSyncLatencyMs: excluded("average_sync_latency_ms"),
          status: excluded("status"),
          version: excluded("version"),
          updatedAt: excluded("updated_at"),
        },
        setWhere: sql`${fedattnSessions.version} < excluded.version`,
      });
  }
  if (contributions.length > 0) {
    await db
      .insert(fedattnContributions)
      .values(
        contributions.map((c) => ({
          id: c.id,
          sessionId: c.sessionId,
          participant: c.participant,
          blockStart: c.blockStart,
          blockEnd: c.blockEnd,
          sizeBytes: c.sizeBytes,
          dtype: c.dtype,
          latencyMs: Math.round(c.latencyMs),
          weight: c.weight,
          at: new Date(c.at),
        })),
      )
      .onConflictDoNothing({ target: fedattnContributions.id });
  }
}

/** Moves queued records to Postgres (the scheduled job). Returns how many were consumed. */
export async function flushRecords(redis: Redis, prefix: string, db: Db): Promise<number> {
  const { consumed } = await drain<FedattnRecord>(redis, fedattnOutboxKey(prefix), (items) => writeRecordBatch(db, items), { batchSize: 200 });
  return consumed;
}
