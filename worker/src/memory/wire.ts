/** The memory trails' answers (routes.ts, admin.ts), shared with the admin CLI (worker/cli/memory.ts). */
import type { CoolingResult } from "./cool.ts";
import { shownTemperature } from "./temperature.ts";
import type { BreadcrumbRow, LeftBreadcrumb, TrailRow } from "./trails.ts";

/** What `POST /v1/memory/breadcrumb` answers. */
export interface BreadcrumbJson {
  object: "memory.breadcrumb";
  trail_id: string;
  breadcrumb_id: string;
  source: string;
  target: string | null;
  /** The trail's temperature after this breadcrumb: 85 for a new trail. */
  temperature: number;
}

/** A trail, its temperature decayed to the moment of the read. */
export interface TrailJson {
  object: "memory.trail";
  id: string;
  source: string;
  target: string | null;
  temperature: number;
  /** How many breadcrumbs were left on it. */
  breadcrumbs: number;
  /** When the last breadcrumb was left. */
  last_warmed_at: string;
  created_at: string;
}

/** A trail on the admin API: with its tenant. */
export type AdminTrailJson = TrailJson & { tenant_id: string };

/** One breadcrumb of a trail. */
export interface BreadcrumbItemJson {
  id: string;
  content: string;
  at: string;
}

/** `GET /v1/memory/trails/:id`: the trail and its newest breadcrumbs (at most 100), newest first. */
export type TrailDetailJson = TrailJson & { recent_breadcrumbs: BreadcrumbItemJson[] };

/** `GET /v1/memory/trails/hot`. */
export interface HotTrailsJson {
  object: "list";
  trails: TrailJson[];
  count: number;
  min_temp: number;
}

/** What a cooling run answers (`POST /admin/memory/cool`). */
export interface CoolingJson {
  object: "memory.cooling";
  cooled: number;
  removed: number;
  /** The removed trails' ids (at most 100). */
  removed_trail_ids: string[];
  half_life_hours: number;
  cold_temperature: number;
  retention_days: number;
}

/** Presents a left breadcrumb. */
export function breadcrumbJson(left: LeftBreadcrumb): BreadcrumbJson {
  return { object: "memory.breadcrumb", trail_id: left.trailId, breadcrumb_id: left.breadcrumbId, source: left.source, target: left.target, temperature: shownTemperature(left.temperature) };
}

/** Presents a trail. */
export function trailJson(row: TrailRow): TrailJson {
  return {
    object: "memory.trail",
    id: row.id,
    source: row.source,
    target: row.target,
    temperature: shownTemperature(row.temperature),
    breadcrumbs: row.breadcrumbs,
    last_warmed_at: row.lastWarmedAt.toISOString(),
    created_at: row.createdAt.toISOString(),
  };
}

/** Presents a trail with its tenant (admin API). */
export function adminTrailJson(row: TrailRow): AdminTrailJson {
  return { ...trailJson(row), tenant_id: row.tenantId };
}

/** Presents a trail with its breadcrumbs. */
export function trailDetailJson(row: TrailRow, breadcrumbs: BreadcrumbRow[]): TrailDetailJson {
  return { ...trailJson(row), recent_breadcrumbs: breadcrumbs.map((b) => ({ id: b.id, content: b.content, at: b.at.toISOString() })) };
}

/** Presents a cooling run with the settings it ran with. */
export function coolingJson(result: CoolingResult, memory: { halfLifeHours: number; coldTemperature: number; retentionDays: number }): CoolingJson {
  return {
    object: "memory.cooling",
    cooled: result.cooled,
    removed: result.removed,
    removed_trail_ids: result.removedIds,
    half_life_hours: memory.halfLifeHours,
    cold_temperature: memory.coldTemperature,
    retention_days: memory.retentionDays,
  };
}
