/**
 * Memory trails (docs/memory.md): leaving breadcrumbs, reading a tenant's hot trails and one trail.
 * Every function takes the tenant explicitly and never reads another tenant's rows. `leaveBreadcrumb`
 * is what other parts of the gateway call (the council, when a council has `leave_breadcrumbs`).
 */
import { and, desc, eq, gte, sql } from "drizzle-orm";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import type * as schema from "../../../schema/tables/index.ts";
import { memoryBreadcrumbs, memoryTrails } from "../../../schema/tables/index.ts";
import { newId } from "../admin/store.ts";
import { decayedTemperature, DEFAULT_HALF_LIFE_HOURS, MAX_TEMPERATURE, START_TEMPERATURE, WARM_UP } from "./temperature.ts";
import { checkBreadcrumb, type Breadcrumb } from "./validate.ts";

/** Any drizzle Postgres database of the schema: the worker's `Db` (platform/db.ts), a transaction, or Node's. */
export type MemoryDb = PgDatabase<PgQueryResultHKT, typeof schema>;

/** What leaving a breadcrumb did: the trail it landed on and the trail's temperature now. */
export interface LeftBreadcrumb {
  trailId: string;
  breadcrumbId: string;
  source: string;
  target: string | null;
  temperature: number;
  /** True when the breadcrumb started a new trail. */
  created: boolean;
}

/**
 * Leaves a breadcrumb for `tenantId`: starts the trail (source, target) at 85 or, when the tenant
 * already has it, warms it to min(100, its decayed temperature + 10). The trail's upsert is one
 * `INSERT … ON CONFLICT DO UPDATE` (concurrent breadcrumbs on one trail serialise on its row, none is
 * lost), in one transaction with the breadcrumb. Throws a 400 `ApiError` for a field outside the
 * limits of validate.ts (`MEMORY_LIMITS`); pass the worker's `settings.memory` for its half-life.
 */
export async function leaveBreadcrumb(db: MemoryDb, tenantId: string, crumb: Breadcrumb, opts: { halfLifeHours: number } = { halfLifeHours: DEFAULT_HALF_LIFE_HOURS }): Promise<LeftBreadcrumb> {
  const { source, target, content } = checkBreadcrumb(crumb);
  const decayed = decayedTemperature(opts.halfLifeHours);
  return db.transaction(async (tx) => {
    const [trail] = await tx
      .insert(memoryTrails)
      .values({ id: newId("trl"), tenantId, source, target: target ?? "", temperature: START_TEMPERATURE, temperatureAt: sql`now()`, breadcrumbs: 1 })
      .onConflictDoUpdate({
        target: [memoryTrails.tenantId, memoryTrails.source, memoryTrails.target],
        set: {
          temperature: sql`least(${MAX_TEMPERATURE}::float8, ${decayed} + ${WARM_UP}::float8)`,
          temperatureAt: sql`greatest(${memoryTrails.temperatureAt}, now())`,
          breadcrumbs: sql`${memoryTrails.breadcrumbs} + 1`,
        },
      })
      // xmax is 0 on a row this statement inserted, set on one it updated.
      .returning({ id: memoryTrails.id, temperature: memoryTrails.temperature, created: sql<boolean>`(xmax = 0)` });
    if (!trail) throw new Error("the trail upsert returned no row");
    const breadcrumbId = newId("bc");
    await tx.insert(memoryBreadcrumbs).values({ id: breadcrumbId, trailId: trail.id, tenantId, content, at: sql`now()` });
    return { trailId: trail.id, breadcrumbId, source, target, temperature: trail.temperature, created: trail.created };
  });
}

/** A trail as read, its temperature decayed to now. */
export interface TrailRow {
  id: string;
  tenantId: string;
  source: string;
  /** null when its breadcrumbs named no target. */
  target: string | null;
  temperature: number;
  breadcrumbs: number;
  lastWarmedAt: Date;
  createdAt: Date;
}

/**
 * When a breadcrumb was last left on the trail. Spelt out with table names: drizzle leaves columns
 * unqualified in a one-table select list, where the subquery's `id` would be the breadcrumb's.
 */
export const LAST_WARMED = sql`coalesce((select max(b.at) from memory_breadcrumbs b where b.trail_id = memory_trails.id), memory_trails.created_at)`;

/** The columns of a trail read, with its temperature decayed to now and when a breadcrumb was last left on it. */
export function trailColumns(halfLifeHours: number) {
  return {
    id: memoryTrails.id,
    tenantId: memoryTrails.tenantId,
    source: memoryTrails.source,
    target: memoryTrails.target,
    temperature: decayedTemperature(halfLifeHours),
    breadcrumbs: memoryTrails.breadcrumbs,
    // The breadcrumbs' (trail_id, at) index makes this one index probe per trail.
    lastWarmedAt: sql<Date>`${LAST_WARMED}`.mapWith(memoryBreadcrumbs.at),
    createdAt: memoryTrails.createdAt,
  };
}

/** Turns the stored '' target into null. */
export function trailRow<R extends { target: string }>(row: R): R & { target: string | null } {
  return { ...row, target: row.target === "" ? null : row.target };
}

/** The tenant's trails at or above `minTemperature` now, hottest first (ties by id), at most `limit`. */
export async function hotTrails(db: MemoryDb, tenantId: string, q: { minTemperature: number; limit: number; halfLifeHours: number }): Promise<TrailRow[]> {
  const decayed = decayedTemperature(q.halfLifeHours);
  const rows = await db
    .select(trailColumns(q.halfLifeHours))
    .from(memoryTrails)
    // Decay only lowers a temperature, so the stored one bounds it: the (tenant_id, temperature) index narrows first.
    .where(and(eq(memoryTrails.tenantId, tenantId), gte(memoryTrails.temperature, q.minTemperature), gte(decayed, q.minTemperature)))
    .orderBy(desc(decayed), memoryTrails.id)
    .limit(q.limit);
  return rows.map(trailRow);
}

/** One breadcrumb as read. */
export interface BreadcrumbRow {
  id: string;
  content: string;
  at: Date;
}

/** Breadcrumbs shown with a trail, newest first. */
export const TRAIL_BREADCRUMBS = 100;

/** The tenant's trail `trailId` with its newest breadcrumbs, or null when the tenant has no such trail (another tenant's included). */
export async function trailWithBreadcrumbs(db: MemoryDb, tenantId: string, trailId: string, halfLifeHours: number): Promise<{ trail: TrailRow; breadcrumbs: BreadcrumbRow[] } | null> {
  const [trail] = await db
    .select(trailColumns(halfLifeHours))
    .from(memoryTrails)
    .where(and(eq(memoryTrails.id, trailId), eq(memoryTrails.tenantId, tenantId)));
  if (!trail) return null;
  const breadcrumbs = await db
    .select({ id: memoryBreadcrumbs.id, content: memoryBreadcrumbs.content, at: memoryBreadcrumbs.at })
    .from(memoryBreadcrumbs)
    .where(and(eq(memoryBreadcrumbs.trailId, trailId), eq(memoryBreadcrumbs.tenantId, tenantId)))
    .orderBy(desc(memoryBreadcrumbs.at), desc(memoryBreadcrumbs.id))
    .limit(TRAIL_BREADCRUMBS);
  return { trail: trailRow(trail), breadcrumbs };
}
