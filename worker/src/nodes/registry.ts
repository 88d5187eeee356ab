import { eq, sql } from "drizzle-orm";
import type { Heartbeat, NodeStatus, SpotNotice } from "../../../schema/contracts/heartbeat.ts";
import { auditLogs, nodes, regions, spotEvents } from "../../../schema/tables/index.ts";
import type { Db } from "../platform/db.ts";
import type { NodeEntry } from "../routing/snapshot.ts";
import { recordHealthChange, type HealthChange } from "./health.ts";

function sameModels(a: string[], b: string[]): boolean {
  return a.length === b.length && [...a].sort().join("\n") === [...b].sort().join("\n");
}

/** True when a heartbeat changes what routing knows about the node (so the snapshot must be rebuilt). */
export function registryChanged(node: NodeEntry | null, hb: Heartbeat): boolean {
  return !node || !node.heartbeats || node.url !== hb.url || node.regionId !== hb.region || !sameModels(node.models, hb.models);
}

/**
 * Writes a heartbeat's registry facts to Postgres: creates the region if it is new (without
 * coordinates, for an admin to fill in), and inserts or updates the node. New nodes get an audit row.
 */
export async function syncNodeFromHeartbeat(db: Db, hb: Heartbeat, at: Date, isNew: boolean): Promise<void> {
  await db.insert(regions).values({ id: hb.region, name: hb.region }).onConflictDoNothing({ target: regions.id });
  await db
    .insert(nodes)
    .values({ id: hb.nodeId, regionId: hb.region, url: hb.url, models: hb.models, reportedStatus: hb.status, lastHeartbeatAt: at })
    .onConflictDoUpdate({
      target: nodes.id,
      set: { regionId: hb.region, url: hb.url, models: hb.models, reportedStatus: hb.status, lastHeartbeatAt: at },
    });
  if (isNew) {
    await db.insert(auditLogs).values({
      id: `aud_${crypto.randomUUID().replaceAll("-", "").slice(0, 20)}`,
      actor: `node:${hb.nodeId}`,
      action: "node.register",
      targetType: "node",
      targetId: hb.nodeId,
      details: { url: hb.url, region: hb.region, models: hb.models },
    });
  }
}

/** Records the node's last heartbeat time and status (throttled by the caller), and a change of its health when there is one. */
export async function touchNode(db: Db, nodeId: string, status: NodeStatus, at: Date, change: HealthChange | null = null): Promise<void> {
  await db.update(nodes).set({ lastHeartbeatAt: at, reportedStatus: status }).where(eq(nodes.id, nodeId));
  if (change) await recordHealthChange(db, change);
}

/** Stores a spot notice and marks the node draining. */
export async function recordSpotNotice(db: Db, notice: SpotNotice): Promise<void> {
  await db.insert(spotEvents).values({
    id: `spot_${crypto.randomUUID().replaceAll("-", "").slice(0, 20)}`,
    nodeId: notice.nodeId,
    provider: notice.provider,
    action: notice.action,
    deadline: notice.deadline ? new Date(notice.deadline) : null,
    noticedAt: new Date(notice.noticedAt),
    detail: notice.detail,
  });
  await db.update(nodes).set({ reportedStatus: "draining", lastHeartbeatAt: sql`coalesce(${nodes.lastHeartbeatAt}, now())` }).where(eq(nodes.id, notice.nodeId));
}
