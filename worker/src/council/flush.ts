/**
 * The scheduled job's side of council votes (docs/council.md): queued vote records to Postgres,
 * idempotent by vote id, each leaving a breadcrumb on the tenant's memory trails when its council
 * asks for it (memory/).
 */
import type { Redis } from "@upstash/redis/cloudflare";
import { councilVotes } from "../../../schema/tables/index.ts";
import type { Db } from "../platform/db.ts";
import { drain } from "../platform/outbox.ts";
import type { VoteAnswer } from "./run.ts";

/** A vote as queued: its answer, who asked, what it cost, and whether it leaves a breadcrumb. */
export interface VoteRecord extends VoteAnswer {
  tenantId: string;
  environmentId: string;
  apiKeyId: string;
  costMicros: number;
  leaveBreadcrumb: boolean;
}

/** Redis list of vote records not yet in Postgres. */
export function voteOutboxKey(prefix: string): string {
  return `${prefix}outbox:council_votes`;
}

/** Writes one batch of votes (a vote already there is left as it is). */
export async function writeVoteBatch(db: Db, items: VoteRecord[], breadcrumb: (db: Db, v: VoteRecord) => Promise<void>): Promise<void> {
  const rows = items.map((v) => ({
    id: v.id,
    at: new Date(v.timestamp),
    tenantId: v.tenantId,
    environmentId: v.environmentId,
    apiKeyId: v.apiKeyId,
    council: v.council,
    question: v.question,
    responses: v.responses,
    failures: v.failures,
    consensus: v.consensus,
    concerns: v.concerns,
    recommendation: v.recommendation,
    confidence: v.confidence,
    auditHash: v.audit_hash,
    partial: v.partial,
    usage: { ...v.usage, cost_micros: v.costMicros },
  }));
  const inserted = await db.insert(councilVotes).values(rows).onConflictDoNothing({ target: councilVotes.id }).returning({ id: councilVotes.id });
  const fresh = new Set(inserted.map((r) => r.id));
  for (const v of items) if (v.leaveBreadcrumb && fresh.has(v.id)) await breadcrumb(db, v);
}

/** Moves queued votes to Postgres (the scheduled job). Returns how many were consumed. */
export async function flushVotes(redis: Redis, prefix: string, db: Db, breadcrumb: (db: Db, v: VoteRecord) => Promise<void>): Promise<number> {
  const { consumed } = await drain<VoteRecord>(redis, voteOutboxKey(prefix), (items) => writeVoteBatch(db, items, breadcrumb), { batchSize: 50 });
  return consumed;
}
