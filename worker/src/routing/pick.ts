import { isStale, type LiveNode } from "../nodes/live.ts";
import type { NodeEntry, RoutingSnapshot } from "./snapshot.ts";

let rotation = 0;

/**
 * Whether a node may take new requests for `model`: enabled by the admin, and either a static
 * entry that never sent a heartbeat, or one whose last heartbeat is fresh (three missed beats make
 * it stale), says ready or degraded (not draining or unhealthy) and lists the model.
 */
export function isEligible(node: NodeEntry, live: LiveNode | undefined, model: string, now: number): boolean {
  if (node.status !== "active" || !node.models.includes(model)) return false;
  if (!live) return !node.heartbeats;
  if (isStale(live, now)) return false;
  return (live.status === "ready" || live.status === "degraded") && live.models.includes(model);
}

/**
 * The nodes that may serve `model`, in the order to try them: eligible nodes (pinned region only,
 * if the environment is pinned), ready before degraded, rotated per request so load spreads.
 * Region- and load-aware strategies replace this ordering later; callers only rely on "try in
 * this order".
 */
export function candidateNodes(
  snapshot: RoutingSnapshot,
  live: Record<string, LiveNode>,
  model: string,
  pinnedRegion: string | null,
  now: number = Date.now(),
): NodeEntry[] {
  const eligible = snapshot.nodes.filter(
    (n) => (pinnedRegion === null || n.regionId === pinnedRegion) && isEligible(n, live[n.id], model, now),
  );
  if (eligible.length <= 1) return eligible;
  rotation = (rotation + 1) % eligible.length;
  const rotated = [...eligible.slice(rotation), ...eligible.slice(0, rotation)];
  const degraded = (n: NodeEntry) => (live[n.id]?.status === "degraded" ? 1 : 0);
  return rotated.sort((a, b) => degraded(a) - degraded(b));
}
