/** A council vote's breadcrumb on the tenant's memory trails (councils with `leave_breadcrumbs`; docs/council.md). */
import { leaveBreadcrumb, type MemoryDb } from "../memory/trails.ts";
import { MEMORY_LIMITS } from "../memory/validate.ts";
import type { VoteRecord } from "./flush.ts";

/**
 * Source `council:<name>`, target the first concern raised (none: no target), content the verdict
 * and the question: a council that keeps meeting the same concern keeps that trail hot.
 */
export async function voteBreadcrumb(db: MemoryDb, vote: VoteRecord, halfLifeHours: number): Promise<void> {
  const content = `${vote.recommendation} (confidence ${vote.confidence}, vote ${vote.id}): ${vote.question}`.slice(0, MEMORY_LIMITS.content);
  await leaveBreadcrumb(db, vote.tenantId, { source: `council:${vote.council}`.slice(0, MEMORY_LIMITS.source), target: vote.concerns[0]?.tag ?? undefined, content }, { halfLifeHours });
}
