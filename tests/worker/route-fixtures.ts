/**
 * Routing inputs for planRoute tests (worker/src/routing/pick.ts): nodes, their live heartbeat state
 * and a RouteInput with least-load defaults, shared by the routing and reserved-throughput tests.
 */
import type { LiveNode } from "../../worker/src/nodes/live.ts";
import type { RouteInput } from "../../worker/src/routing/pick.ts";
import type { NodeEntry, RoutingSnapshot } from "../../worker/src/routing/snapshot.ts";

export const NOW = 1_800_000_000_000;
export const MODEL = "m";

/** An active node serving MODEL in `regionId`. */
export function routeNode(id: string, regionId = "us-east", extra: Partial<NodeEntry> = {}): NodeEntry {
  return { id, regionId, url: `http://${id}.test`, models: [MODEL], status: "active", secretVersion: 1, heartbeats: true, ...extra };
}

/** A ready node's heartbeat, half a second old, idle. */
export function routeLive(extra: Partial<LiveNode> = {}): LiveNode {
  return { status: "ready", at: NOW - 500, intervalMs: 1000, models: [MODEL], inFlight: 0, capacity: 16, waiting: 0, kvCacheUsage: 0.1, running: 0, ...extra };
}

export type RouteFixture = Partial<Omit<RouteInput, "snapshot">> & {
  nodes: NodeEntry[];
  /** Per node, what its heartbeat says beyond routeLive's defaults. */
  liveOver?: Record<string, Partial<LiveNode>>;
  regions?: RoutingSnapshot["regions"];
  reservations?: RoutingSnapshot["reservations"];
};

/** A least-load RouteInput for MODEL over `nodes`, every node live; `over` replaces any field. */
export function routeInput(fixture: RouteFixture): RouteInput {
  const { nodes, liveOver, regions = {}, reservations = [], ...over } = fixture;
  const snapshot: RoutingSnapshot = { builtAt: NOW, models: {}, nodes, globalLimits: null, regions, reservations };
  return {
    snapshot,
    live: Object.fromEntries(nodes.map((n) => [n.id, routeLive(liveOver?.[n.id])])),
    circuits: {},
    model: MODEL,
    tenantId: "ten_a",
    pinnedRegion: null,
    requestedRegion: null,
    location: null,
    strategy: "least-load",
    prefixHash: null,
    weights: { waiting: 1, running: 0.1, kvCache: 2 },
    affinitySlack: 0.25,
    sentSince: () => 0,
    now: NOW,
    random: Math.random,
    ...over,
  };
}
