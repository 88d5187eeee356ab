import type { NodeEntry, RoutingSnapshot } from "./snapshot.ts";

let rotation = 0;

/**
 * The nodes that may serve `model`, in the order to try them: active nodes serving the model,
 * rotated per request so load spreads, then the rest as failover. Region- and load-aware strategies
 * replace this ordering in the routing module later; callers only rely on "try in this order".
 */
export function candidateNodes(snapshot: RoutingSnapshot, model: string, pinnedRegion: string | null): NodeEntry[] {
  const eligible = snapshot.nodes.filter(
    (n) => n.status === "active" && n.models.includes(model) && (pinnedRegion === null || n.regionId === pinnedRegion),
  );
  if (eligible.length <= 1) return eligible;
  rotation = (rotation + 1) % eligible.length;
  return [...eligible.slice(rotation), ...eligible.slice(0, rotation)];
}
