import { isStale, type LiveNode } from "../nodes/live.ts";
import { circuitPhase, type CircuitState } from "./breaker.ts";
import { distanceKm, type CallerLocation } from "./geo.ts";
import { statusOf, type ReservationRates } from "./reservation-usage.ts";
import type { NodeEntry, RoutingSnapshot, RoutingStrategy } from "./snapshot.ts";
import { orderNodes, type LoadWeights } from "./strategies.ts";

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

/** Below this share of healthy nodes (for the model) a region is degraded and loses traffic first. */
export const DEGRADED_REGION_SHARE = 0.5;
/** Ordinary traffic may use a reserved node only while it is less than this full. */
export const RESERVED_NODE_SHARE = 0.5;

/** Everything a routing decision looks at. */
export interface RouteInput {
  snapshot: RoutingSnapshot;
  live: Record<string, LiveNode>;
  circuits: Record<string, CircuitState>;
  model: string;
  tenantId: string;
  /** The environment's region: it never leaves it. */
  pinnedRegion: string | null;
  /** A region the caller asked for (already checked against the environment's allowance). */
  requestedRegion: string | null;
  location: CallerLocation | null;
  strategy: RoutingStrategy;
  prefixHash: number | null;
  weights: LoadWeights;
  affinitySlack: number;
  sentSince: (nodeId: string, liveAt: number) => number;
  now: number;
  random?: () => number;
  /** Reserving tenants' delivered tokens per second (routing/reservation-usage.ts); null or absent: unknown. */
  reservationRates?: ReservationRates;
}

/** The decision: nodes in the order to try, and which of them are half-open circuits (trial only). */
export interface RoutePlan {
  nodes: NodeEntry[];
  halfOpen: Set<string>;
  /** Regions in the order they were considered (for logs and the admin view). */
  regions: { id: string; distanceKm: number | null; degraded: boolean }[];
  /** Why `nodes` is empty, for the 503's message. */
  emptyReason: "not_served" | "no_node" | "pinned_region" | "shed" | null;
}

function load(live: LiveNode | undefined, sent: number): number {
  return live ? live.inFlight + (live.waiting ?? 0) + sent : sent;
}

/**
 * Plans where a request goes: the nearest region with healthy capacity for the model first (a
 * requested region before that; a pinned environment only its own region), degraded regions
 * (fewer than half their nodes healthy) after the healthy ones, and within each region the nodes in
 * the environment's or model's strategy order. Reservations (docs/routing.md, "Reserved capacity"):
 * a tenant under its reserved rate gets its reserved nodes first, anywhere; at or over it, its
 * requests go to ordinary capacity first, then its own reserved nodes, then others' like anyone's.
 * Others may not use a reserved node at all while its tenant is under its rate and was served in
 * the window (it is using its reservation); otherwise only while the node is less than half full,
 * so ordinary traffic is shed first when capacity is short. With the rates unknown (Redis down) a
 * reserving tenant counts as under its rate and others get the half-full rule. Nodes with an open circuit are left out;
 * half-open ones are listed and marked so the caller can let exactly one trial through.
 */
export function planRoute(input: RouteInput): RoutePlan {
  const { snapshot, live, model, now } = input;
  const random = input.random ?? Math.random;
  const serving = snapshot.nodes.filter((n) => n.status === "active" && n.models.includes(model));
  const halfOpen = new Set<string>();
  const eligible = serving.filter((n) => {
    if (!isEligible(n, live[n.id], model, now)) return false;
    const phase = circuitPhase(input.circuits[n.id], now);
    if (phase === "half_open") halfOpen.add(n.id);
    return phase !== "open";
  });

  const reservations = (snapshot.reservations ?? []).filter((r) => r.model === model);
  const rates = input.reservationRates ?? null;
  const reserved = new Set(reservations.flatMap((r) => r.nodeIds));
  const own = statusOf(reservations, rates, input.tenantId, model);
  const mine = new Set(own.nodeIds);
  // Nodes whose tenant is under its rate and using it: closed to everyone else.
  const guarded = new Set<string>();
  for (const tenantId of new Set(reservations.map((r) => r.tenantId))) {
    if (tenantId === input.tenantId) continue;
    const status = statusOf(reservations, rates, tenantId, model);
    if (status.state === "under" && status.delivered !== null && status.delivered > 0) for (const id of status.nodeIds) guarded.add(id);
  }
  const usable = eligible.filter((n) => {
    if (input.pinnedRegion !== null && n.regionId !== input.pinnedRegion) return false;
    if (!reserved.has(n.id) || mine.has(n.id)) return true;
    if (guarded.has(n.id)) return false;
    const l = live[n.id];
    return !l || load(l, input.sentSince(n.id, l.at)) < Math.max(1, l.capacity) * RESERVED_NODE_SHARE;
  });

  // Regions: health share among the nodes serving the model, distance from the caller.
  const regionIds = [...new Set(usable.map((n) => n.regionId))];
  const regions = regionIds.map((id) => {
    const all = serving.filter((n) => n.regionId === id).length;
    const healthy = eligible.filter((n) => n.regionId === id).length;
    const r = snapshot.regions?.[id];
    const distance = input.location && r && r.latitude !== null && r.longitude !== null ? distanceKm(input.location, { latitude: r.latitude, longitude: r.longitude }) : null;
    return { id, distanceKm: distance, degraded: all > 0 && healthy / all < DEGRADED_REGION_SHARE };
  });
  regions.sort(
    (a, b) =>
      Number(b.id === input.requestedRegion) - Number(a.id === input.requestedRegion) ||
      Number(a.degraded) - Number(b.degraded) ||
      (a.distanceKm ?? Infinity) - (b.distanceKm ?? Infinity) ||
      a.id.localeCompare(b.id),
  );

  const strategyInput = { live, weights: input.weights, sentSince: input.sentSince, prefixHash: input.prefixHash, affinitySlack: input.affinitySlack, random };
  const ordered = regions.flatMap((region) => {
    const inRegion = orderNodes(input.strategy, usable.filter((n) => n.regionId === region.id), strategyInput, `${model}|${region.id}`);
    // Ordinary nodes, then the tenant's own reserved nodes (first anyway while it is under its rate),
    // then others' reserved nodes.
    const rank = (n: NodeEntry) => (!reserved.has(n.id) ? 0 : mine.has(n.id) ? 1 : 2);
    return [0, 1, 2].flatMap((r) => inRegion.filter((n) => rank(n) === r));
  });
  const nodes = own.state !== "under" ? ordered : [...ordered.filter((n) => mine.has(n.id)), ...ordered.filter((n) => !mine.has(n.id))];

  let emptyReason: RoutePlan["emptyReason"] = null;
  if (nodes.length === 0) {
    if (input.pinnedRegion !== null && eligible.length > 0 && !eligible.some((n) => n.regionId === input.pinnedRegion)) emptyReason = "pinned_region";
    else if (eligible.length > 0) emptyReason = "shed";
    else if (!snapshot.nodes.some((n) => n.models.includes(model))) emptyReason = "not_served";
    else emptyReason = "no_node";
  }
  return { nodes, halfOpen, regions, emptyReason };
}
