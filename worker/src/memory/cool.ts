/**
 * Cooling (docs/memory.md#cooling): writes every trail's decayed temperature back (so the stored
 * value, and the index on it, stay close to the truth) and removes trails that are cold and on which
 * no breadcrumb was left within the retention period, with their breadcrumbs. Run by the hourly
 * Cron Trigger (jobs/scheduled.ts) and by hand (`POST /admin/memory/cool`). Reads never depend on
 * it: they decay the stored temperature to the moment of the read.
 */
import { and, lt, sql } from "drizzle-orm";
import { memoryTrails } from "../../../schema/tables/index.ts";
import { decayedTemperature } from "./temperature.ts";
import { LAST_WARMED, type MemoryDb } from "./trails.ts";

/** What one cooling run did. */
export interface CoolingResult {
  /** Trails whose decayed temperature was written back. */
  cooled: number;
  /** Trails removed (cold and past retention). */
  removed: number;
  /** The removed trails' ids, at most `REMOVED_IDS_SHOWN` of them. */
  removedIds: string[];
}

/** The settings cooling runs with (the worker's `settings.memory`; kept structural so the CLI's types need no worker bindings). */
export interface CoolingSettings {
  halfLifeHours: number;
  coldTemperature: number;
  retentionDays: number;
}

/** Removed trails' ids a cooling result lists. */
export const REMOVED_IDS_SHOWN = 100;

/** Cools every tenant's trails now; see the file comment. The delete and the write-back commit together. */
export async function coolTrails(db: MemoryDb, memory: CoolingSettings): Promise<CoolingResult> {
  const decayed = decayedTemperature(memory.halfLifeHours);
  return db.transaction(async (tx) => {
    const removed = await tx
      .delete(memoryTrails)
      .where(and(lt(decayed, memory.coldTemperature), sql`${LAST_WARMED} < now() - ${memory.retentionDays}::float8 * interval '1 day'`))
      .returning({ id: memoryTrails.id });
    // Only trails at least a minute past their last write: a trail just warmed has nothing to give back.
    const cooled = await tx
      .update(memoryTrails)
      .set({ temperature: decayed, temperatureAt: sql`greatest(${memoryTrails.temperatureAt}, now())` })
      .where(lt(memoryTrails.temperatureAt, sql`now() - interval '1 minute'`))
      .returning({ id: memoryTrails.id });
    return { cooled: cooled.length, removed: removed.length, removedIds: removed.slice(0, REMOVED_IDS_SHOWN).map((r) => r.id) };
  });
}

