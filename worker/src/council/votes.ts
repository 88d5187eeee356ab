/** Stored votes, as both the key-facing and the admin listing read them (newest first, cursor pages). */
import { and, desc, eq, sql, type SQL } from "drizzle-orm";
import { councilVotes } from "../../../schema/tables/index.ts";
import { decodeCursor, encodeCursor, type ListBody } from "../admin/pagination.ts";
import type { MemoryDb as AnyDb } from "../memory/trails.ts";
import type { StoredVoteJson } from "./wire.ts";

type VoteRow = typeof councilVotes.$inferSelect;

export function voteJson(row: VoteRow): StoredVoteJson {
  return {
    object: "council.vote",
    id: row.id,
    council: row.council,
    question: row.question,
    responses: row.responses,
    failures: row.failures,
    consensus: row.consensus,
    concerns: row.concerns,
    recommendation: row.recommendation,
    confidence: row.confidence,
    partial: row.partial,
    audit_hash: row.auditHash,
    timestamp: row.at.toISOString(),
    usage: { prompt_tokens: row.usage.prompt_tokens, completion_tokens: row.usage.completion_tokens, total_tokens: row.usage.total_tokens, cost_usd: row.usage.cost_micros / 1_000_000 },
    tenant_id: row.tenantId,
    environment_id: row.environmentId,
    key_id: row.apiKeyId,
  };
}

/** One page of votes (a tenant's, or every tenant's when `tenantId` is null), newest first. */
export async function listVotes(db: AnyDb, filter: { tenantId: string | null; council?: string; cursor?: string; limit: number }): Promise<ListBody<StoredVoteJson>> {
  const after = decodeCursor(filter.cursor, ["at", "id"]);
  const where: (SQL | undefined)[] = [
    filter.tenantId ? eq(councilVotes.tenantId, filter.tenantId) : undefined,
    filter.council ? eq(councilVotes.council, filter.council) : undefined,
    after ? sql`(${councilVotes.at}, ${councilVotes.id}) < (${after.at}::timestamptz, ${after.id})` : undefined,
  ];
  const rows = await db
    .select({ row: councilVotes, atText: sql<string>`${councilVotes.at}::text` })
    .from(councilVotes)
    .where(and(...where))
    .orderBy(desc(councilVotes.at), desc(councilVotes.id))
    .limit(filter.limit + 1);
  const shown = rows.slice(0, filter.limit);
  const last = shown.at(-1);
  return { object: "list", data: shown.map((r) => voteJson(r.row)), next_cursor: rows.length > filter.limit && last ? encodeCursor({ at: last.atText, id: last.row.id }) : null };
}

/** One vote of a tenant (or of any tenant when `tenantId` is null); null when there is none to show. */
export async function readVote(db: AnyDb, id: string, tenantId: string | null): Promise<StoredVoteJson | null> {
  const [row] = await db.select().from(councilVotes).where(and(eq(councilVotes.id, id), tenantId ? eq(councilVotes.tenantId, tenantId) : undefined));
  return row ? voteJson(row) : null;
}
