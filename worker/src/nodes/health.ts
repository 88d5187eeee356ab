/**
 * A node's health history (`health_checks`): one row each time the status it reports changes, or
 * it goes stale (three missed heartbeats) or comes back. Written off the answer path: the heartbeat
 * handler hands the write to `waitUntil`, and `sweepStaleNodes` (for the scheduled job) records the
 * nodes that went silent without telling.
 */
import type { Redis } from "@upstash/redis/cloudflare";
import { desc, inArray } from "drizzle-orm";
import { healthChecks, nodes } from "../../../schema/tables/index.ts";
import type { Db } from "../platform/db.ts";
import { isStale, liveNodesKey, MISSED_HEARTBEATS_STALE, type LiveNode } from "./live.ts";

/** What a health check records: the status the node reported, or `stale` when it stopped reporting. */
export type HealthStatus = LiveNode["status"] | "stale";

/** A change of a node's health, as written to `health_checks`. */
export interface HealthChange {
  nodeId: string;
  at: Date;
  status: HealthStatus;
  /** Null for a node the gateway had no live state of (new, or its live entry was removed). */
  previousStatus: HealthStatus | null;
  detail: Record<string, unknown>;
}

/** The health a live entry stands for at `now` (null without one). */
export function liveHealth(live: LiveNode | undefined, now: number): HealthStatus | null {
  if (!live) return null;
  return isStale(live, now) ? "stale" : live.status;
}

/** A number a live entry may carry (fields are added over time; old entries lack them). */
export function liveNumber(live: LiveNode, field: string): number | null {
  const value: unknown = (live as unknown as Record<string, unknown>)[field];
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

/** The load figures of a live entry, recorded with a change. */
export function loadDetail(live: LiveNode): Record<string, unknown> {
  return {
    inFlight: live.inFlight,
    capacity: live.capacity,
    waiting: live.waiting,
    running: liveNumber(live, "running"),
    kvCacheUsage: live.kvCacheUsage,
    recentTtftMs: liveNumber(live, "recentTtftMs"),
    intervalMs: live.intervalMs,
  };
}

/** The change a heartbeat's new live entry makes to the node's health, or null when it is unchanged. */
export function healthChangeOf(nodeId: string, previous: LiveNode | undefined, next: LiveNode, now: number): HealthChange | null {
  const before = liveHealth(previous, now);
  if (before === next.status) return null;
  return { nodeId, at: new Date(now), status: next.status, previousStatus: before, detail: loadDetail(next) };
}

/** Inserts one `health_checks` row. */
export async function recordHealthChange(db: Db, change: HealthChange): Promise<void> {
  await db.insert(healthChecks).values({
    id: `hc_${crypto.randomUUID().replaceAll("-", "").slice(0, 20)}`,
    nodeId: change.nodeId,
    at: change.at,
    status: change.status,
    previousStatus: change.previousStatus,
    detail: change.detail,
  });
}

/**
 * Records a `stale` row for every registered node whose live entry went stale since its last
 * recorded check (a node that dies cannot say so; its next heartbeat then records the return).
 * Dated when the node became stale. For the scheduled job; returns the number of rows written.
 */
export async function sweepStaleNodes(deps: { db: Db; redis: Redis; prefix: string; now?: number }): Promise<number> {
  const now = deps.now ?? Date.now();
  const live = (await deps.redis.hgetall<Record<string, LiveNode>>(liveNodesKey(deps.prefix))) ?? {};
  const stale = Object.entries(live).filter(([, entry]) => isStale(entry, now));
  if (stale.length === 0) return 0;
  const ids = stale.map(([id]) => id);
  const [registered, latest] = await Promise.all([
    deps.db.select({ id: nodes.id }).from(nodes).where(inArray(nodes.id, ids)),
    deps.db
      .selectDistinctOn([healthChecks.nodeId], { nodeId: healthChecks.nodeId, status: healthChecks.status })
      .from(healthChecks)
      .where(inArray(healthChecks.nodeId, ids))
      .orderBy(healthChecks.nodeId, desc(healthChecks.at)),
  ]);
  const known = new Set(registered.map((r) => r.id));
  const lastStatus = new Map(latest.map((r) => [r.nodeId, r.status]));
  let written = 0;
  for (const [nodeId, entry] of stale) {
    if (!known.has(nodeId) || lastStatus.get(nodeId) === "stale") continue;
    await recordHealthChange(deps.db, {
      nodeId,
      at: new Date(entry.at + MISSED_HEARTBEATS_STALE * entry.intervalMs),
      status: "stale",
      previousStatus: entry.status,
      detail: { ...loadDetail(entry), lastHeartbeatAt: new Date(entry.at).toISOString() },
    });
    written++;
  }
  return written;
}
