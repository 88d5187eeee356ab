import { and, asc, gt, inArray, sql } from "drizzle-orm";
import { creditGrants, usageRecords } from "../../../schema/tables/index.ts";
import type { Db } from "../platform/db.ts";

type Tx = Parameters<Parameters<Db["transaction"]>[0]>[0];

/** A usage record just inserted by the flush, with what the allocation needs. */
export interface CostedRecord {
  id: string;
  tenantId: string;
  at: Date;
  costMicros: number;
}

/** A grant as the allocation sees it. */
export interface Grant {
  id: string;
  tenantId: string;
  remainingMicros: number;
  createdAt: Date;
  expiresAt: Date | null;
}

/**
 * Pays each record's cost from the tenant's grants, oldest record first, drawing from the grant that
 * expires soonest (never-expiring grants last, then the oldest grant). A grant pays only for usage
 * from its creation until its expiry. Mutates `remainingMicros` of the grants it draws from and
 * returns the credit of each record that got any.
 */
export function allocateCredits(records: CostedRecord[], grants: Grant[]): Map<string, number> {
  const byTenant = new Map<string, Grant[]>();
  for (const g of grants) byTenant.set(g.tenantId, [...(byTenant.get(g.tenantId) ?? []), g]);
  for (const list of byTenant.values()) {
    list.sort((a, b) => (a.expiresAt?.getTime() ?? Infinity) - (b.expiresAt?.getTime() ?? Infinity) || a.createdAt.getTime() - b.createdAt.getTime() || a.id.localeCompare(b.id));
  }
  const credits = new Map<string, number>();
  const ordered = [...records].sort((a, b) => a.at.getTime() - b.at.getTime() || a.id.localeCompare(b.id));
  for (const r of ordered) {
    let due = r.costMicros;
    for (const g of byTenant.get(r.tenantId) ?? []) {
      if (due <= 0) break;
      if (g.remainingMicros <= 0 || g.createdAt > r.at || (g.expiresAt !== null && g.expiresAt <= r.at)) continue;
      const take = Math.min(due, g.remainingMicros);
      g.remainingMicros -= take;
      due -= take;
    }
    if (due < r.costMicros) credits.set(r.id, r.costMicros - due);
  }
  return credits;
}

/**
 * Draws the cost of freshly inserted usage records from their tenants' credit grants, inside the
 * flush's transaction: the grants are locked, the records get their `credit_micros`, and the grants
 * their new remainder, all committed with the records (so a redelivered batch, which inserts
 * nothing, draws nothing). Returns the credit per record id.
 */
export async function applyCredits(tx: Tx, records: CostedRecord[]): Promise<Map<string, number>> {
  const costed = records.filter((r) => r.costMicros > 0);
  if (costed.length === 0) return new Map();
  const tenantIds = [...new Set(costed.map((r) => r.tenantId))];
  const grants = await tx
    .select({ id: creditGrants.id, tenantId: creditGrants.tenantId, remainingMicros: creditGrants.remainingMicros, createdAt: creditGrants.createdAt, expiresAt: creditGrants.expiresAt })
    .from(creditGrants)
    .where(and(inArray(creditGrants.tenantId, tenantIds), gt(creditGrants.remainingMicros, 0)))
    .orderBy(asc(creditGrants.id))
    .for("update");
  if (grants.length === 0) return new Map();
  const before = new Map(grants.map((g) => [g.id, g.remainingMicros]));
  const credits = allocateCredits(costed, grants);
  if (credits.size === 0) return credits;
  const recordValues = sql.join(
    [...credits].map(([id, micros]) => sql`(${id}::text, ${micros}::bigint)`),
    sql`, `,
  );
  await tx.execute(sql`update ${usageRecords} set credit_micros = v.micros from (values ${recordValues}) as v(id, micros) where ${usageRecords.id} = v.id`);
  const drawn = grants.filter((g) => g.remainingMicros !== before.get(g.id));
  const grantValues = sql.join(
    drawn.map((g) => sql`(${g.id}::text, ${g.remainingMicros}::bigint)`),
    sql`, `,
  );
  await tx.execute(sql`update ${creditGrants} set remaining_micros = v.remaining from (values ${grantValues}) as v(id, remaining) where ${creditGrants.id} = v.id`);
  return credits;
}
