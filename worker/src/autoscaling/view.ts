/**
 * What the autoscaler sees: the policies and the registry facts it needs, read from Postgres in a
 * few queries on one connection (`loadFleet`), and the live node state (Redis, nodes/live.ts); then
 * `viewOf` puts one policy's view together (pure).
 */
import { and, asc, desc, gt, inArray, isNotNull, ne } from "drizzle-orm";
import { autoscalingPolicies, nodeLaunches, nodes, spotEvents } from "../../../schema/tables/index.ts";
import type { AdminDb } from "../admin/store.ts";
import { isStale, type LiveNode } from "../nodes/live.ts";
import type { LaunchState, Policy, ScalingView, ViewLaunch, ViewNode } from "./decide.ts";

/**
 * How long a spot notice asks for a replacement. Clouds give two minutes (AWS) or thirty seconds
 * (GCP, Azure) of warning; a quarter of an hour covers a cron run that came late without replacing
 * a node that was noticed long ago and is gone by now.
 */
export const SPOT_NOTICE_WINDOW_MS = 15 * 60_000;

/** Launch states that are capacity on its way. */
export const ON_THE_WAY: readonly LaunchState[] = ["pending", "launching", "registering"];

/** The registry facts of every policy, as `loadFleet` read them. */
export interface Fleet {
  policies: Policy[];
  nodes: { id: string; regionId: string; models: string[]; status: "active" | "draining" | "disabled" }[];
  /** Launches not yet terminated or failed. */
  launches: (typeof nodeLaunches.$inferSelect)[];
  /** Node ids that a launch made in the notice window replaces (a failed one does not count). */
  replaced: string[];
  /** The latest notice per node within the window. */
  notices: Map<string, { receivedAt: number; deadline: number | null; action: string }>;
}

/** Reads every policy (or the one named) and the registry facts they need. */
export async function loadFleet(db: AdminDb, now: number, only?: { model: string; region: string }): Promise<Fleet> {
  const all = await db.select().from(autoscalingPolicies).orderBy(asc(autoscalingPolicies.model), asc(autoscalingPolicies.region));
  const policies = only ? all.filter((p) => p.model === only.model && p.region === only.region) : all;
  if (policies.length === 0) return { policies, nodes: [], launches: [], replaced: [], notices: new Map() };
  const regionIds = [...new Set(policies.map((p) => p.region))];
  const since = new Date(now - SPOT_NOTICE_WINDOW_MS);
  const [nodeRows, launchRows, replacing, noticeRows] = await Promise.all([
    db.select({ id: nodes.id, regionId: nodes.regionId, models: nodes.models, status: nodes.status }).from(nodes).where(inArray(nodes.regionId, regionIds)),
    db.select().from(nodeLaunches).where(and(inArray(nodeLaunches.region, regionIds), inArray(nodeLaunches.state, ["pending", "launching", "registering", "serving", "draining", "terminating"]))),
    db
      .select({ replacesNodeId: nodeLaunches.replacesNodeId })
      .from(nodeLaunches)
      .where(and(isNotNull(nodeLaunches.replacesNodeId), ne(nodeLaunches.state, "failed"), gt(nodeLaunches.createdAt, new Date(now - 2 * SPOT_NOTICE_WINDOW_MS)))),
    db
      .select({ nodeId: spotEvents.nodeId, receivedAt: spotEvents.receivedAt, deadline: spotEvents.deadline, action: spotEvents.action })
      .from(spotEvents)
      .where(gt(spotEvents.receivedAt, since))
      .orderBy(desc(spotEvents.receivedAt)),
  ]);
  const notices: Fleet["notices"] = new Map();
  for (const n of noticeRows) {
    if (!notices.has(n.nodeId)) notices.set(n.nodeId, { receivedAt: n.receivedAt.getTime(), deadline: n.deadline?.getTime() ?? null, action: n.action });
  }
  return {
    policies,
    nodes: nodeRows,
    launches: launchRows,
    replaced: replacing.map((r) => r.replacesNodeId).filter((id): id is string => id !== null),
    notices,
  };
}

/** One policy's view: its model's nodes in its region with their live load, and its launches on their way. */
export function viewOf(policy: Policy, fleet: Fleet, live: Record<string, LiveNode>, now: number): ScalingView {
  const launchOf = new Map(fleet.launches.map((l) => [l.nodeId, l]));
  const viewNodes: ViewNode[] = [];
  for (const n of fleet.nodes) {
    if (n.regionId !== policy.region) continue;
    const state = live[n.id];
    const launch = launchOf.get(n.id);
    const models = state?.models ?? n.models;
    if (!models.includes(policy.model) && launch?.model !== policy.model) continue;
    viewNodes.push({
      id: n.id,
      status: !state || isStale(state, now) ? "stale" : state.status,
      adminStatus: n.status,
      waiting: state?.waiting ?? 0,
      inFlight: state?.inFlight ?? 0,
      running: state?.running ?? 0,
      launch: launch ? { id: launch.id, state: launch.state, spot: launch.spot, replacesNodeId: launch.replacesNodeId } : null,
      spotNotice: fleet.notices.get(n.id) ?? null,
    });
  }
  const launches: ViewLaunch[] = fleet.launches
    .filter((l) => l.model === policy.model && l.region === policy.region && ON_THE_WAY.includes(l.state))
    .map((l) => ({ id: l.id, nodeId: l.nodeId, state: l.state, replacesNodeId: l.replacesNodeId }));
  return { nodes: viewNodes, launches, replaced: fleet.replaced };
}
