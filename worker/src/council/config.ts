/**
 * Which councils a tenant has (docs/council.md): the built-in `default` (unless the tenant has its
 * own of that name) and the tenant's rows in `councils`. Read on every vote, so cached: in the
 * isolate for ISOLATE_MS, in Redis for REDIS_SECONDS; the admin routes drop the Redis entry (and
 * this isolate's) on every change. Redis failing: Postgres; both failing: the built-in only.
 */
import { eq } from "drizzle-orm";
import { councils } from "../../../schema/tables/index.ts";
import type { RequestDeps } from "../platform/deps.ts";
import type { RoutingSnapshot } from "../routing/snapshot.ts";
import { builtinCouncil, DEFAULT_COUNCIL_NAME } from "./builtin.ts";
import type { Council } from "./types.ts";

const ISOLATE_MS = 5_000;
const REDIS_SECONDS = 300;
const local = new Map<string, { at: number; councils: Council[] }>();

/** Redis key of a tenant's councils. */
export function councilCacheKey(prefix: string, tenantId: string): string {
  return `${prefix}councils:${tenantId}`;
}

/** Forgets this isolate's copy of a tenant's councils (after an admin change). */
export function forgetCouncils(tenantId: string): void {
  local.delete(tenantId);
}

/** A stored council as a vote needs it. */
export function councilFromRow(row: typeof councils.$inferSelect): Council {
  return {
    name: row.name,
    specialists: row.specialists,
    synthesiser: row.synthesiser,
    deadlineMs: row.deadlineMs,
    criticalTags: row.criticalTags,
    leaveBreadcrumbs: row.leaveBreadcrumbs,
    builtin: false,
  };
}

async function tenantCouncils(deps: RequestDeps, tenantId: string): Promise<Council[]> {
  const hit = local.get(tenantId);
  if (hit && Date.now() - hit.at < ISOLATE_MS) return hit.councils;
  const key = councilCacheKey(deps.settings.redisPrefix, tenantId);
  let list: Council[] | null = null;
  try {
    const cached = await deps.redis.get<Council[]>(key);
    if (Array.isArray(cached)) list = cached;
  } catch (err) {
    deps.log("council_cache_read_failed", { tenantId, error: String(err) });
  }
  if (list === null) {
    try {
      const rows = await deps.db((db) => db.select().from(councils).where(eq(councils.tenantId, tenantId)));
      list = rows.map(councilFromRow);
      const value = list;
      deps.waitUntil(deps.redis.set(key, JSON.stringify(value), { ex: REDIS_SECONDS }).catch(() => null));
    } catch (err) {
      // Without Postgres a tenant still has the built-in council; its own wait for the database.
      deps.log("council_load_failed", { tenantId, error: String(err) });
      return hit?.councils ?? [];
    }
  }
  local.set(tenantId, { at: Date.now(), councils: list });
  return list;
}

/** The model the built-in council asks: COUNCIL_DEFAULT_MODEL, else the catalogue's first chat model (by id) that is not an adapter. */
export function defaultCouncilModel(configured: string, chatModels: { id: string; baseModel?: string | null }[]): string | null {
  if (configured !== "") return configured;
  const ids = chatModels
    .filter((m) => !m.baseModel)
    .map((m) => m.id)
    .sort();
  return ids[0] ?? null;
}

/** Every council the tenant may use, the built-in first (or the tenant's own `default` in its place). */
export async function councilsFor(deps: RequestDeps, tenantId: string, snapshot: RoutingSnapshot): Promise<Council[]> {
  const own = await tenantCouncils(deps, tenantId);
  const model = defaultCouncilModel(
    deps.settings.council.defaultModel,
    Object.values(snapshot.models).filter((m) => m.kind === "chat"),
  );
  const builtin = own.some((c) => c.name === DEFAULT_COUNCIL_NAME) || model === null ? [] : [builtinCouncil(model)];
  return [...builtin, ...own];
}
