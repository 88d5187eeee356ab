/**
 * JSON shapes of the fleet admin API (`/admin/nodes`, `/admin/regions`, `/admin/reservations`) and
 * their presenters: registry rows from Postgres joined with the live state the gateway keeps in
 * Redis (heartbeats, circuit breakers). Kept apart from wire.ts, which holds the tenancy shapes.
 */
import type { capacityReservations, healthChecks, nodeLaunches, nodes, regions } from "../../../schema/tables/index.ts";
import { liveNumber } from "./health.ts";
import { isStale, type LiveNode } from "./live.ts";
import { circuitPhase, type CircuitPhase, type CircuitState } from "../routing/breaker.ts";

type NodeRow = typeof nodes.$inferSelect;

/** A node: its registry entry, its live state from the last heartbeat, and its circuit. */
export interface NodeJson {
  object: "node";
  id: string;
  region_id: string;
  url: string;
  /** Models the registry routes to the node (from its heartbeats, or `node add`). */
  models: string[];
  /** Admin status: `draining` and `disabled` nodes get no new requests. */
  status: NodeRow["status"];
  secret_version: number;
  created_at: string;
  /** Last heartbeat Postgres knows of (written at most once a minute when nothing changes); null for a static node. */
  last_heartbeat_at: string | null;
  /** Status of the last heartbeat (live state, else the registry's copy). */
  reported_status: NodeRow["reportedStatus"];
  /** True when a node that sends heartbeats missed three of them (or has no live state): it gets no traffic. */
  stale: boolean;
  heartbeat_age_ms: number | null;
  heartbeat_interval_ms: number | null;
  /** Load from the last heartbeat; null when there is none or the engines do not report it. */
  in_flight: number | null;
  capacity: number | null;
  waiting: number | null;
  running: number | null;
  kv_cache_usage: number | null;
  recent_ttft_ms: number | null;
  /** Moving average of the TTFT across heartbeats (what the `latency` strategy compares). */
  ttft_ewma_ms: number | null;
  /** Each engine's load from the last heartbeat (empty when unknown). */
  engines: { id: string; kind: string; healthy: boolean; circuit: string; in_flight: number; max_concurrency: number; running: number | null; waiting: number | null; kv_cache_usage: number | null; recent_ttft_ms: number | null }[];
  /** LoRA adapters the node's engines serve (name and base model), from the last heartbeat (empty when unknown). */
  adapters: { name: string; base: string }[];
  circuit: CircuitPhase;
  circuit_failures: number;
  circuit_open_until: string | null;
  /** May take new requests: admin-active, and fresh with status ready or degraded (or a static node). */
  healthy: boolean;
  /** For a node launched through SkyPilot (docs/provisioning.md): its launch and state; null otherwise. */
  launch: NodeLaunchJson | null;
}

/** A launched node's launch, as `/admin/nodes` shows it (the whole record: `GET /admin/nodes/launches/:id`). */
export interface NodeLaunchJson {
  id: string;
  state: (typeof nodeLaunches.$inferSelect)["state"];
  cluster: string;
  provider: string;
  gpu: string;
  spot: boolean;
  error: string | null;
}

/** The launch summary of a node. */
export function nodeLaunchJson(launch: typeof nodeLaunches.$inferSelect): NodeLaunchJson {
  return { id: launch.id, state: launch.state, cluster: launch.cluster, provider: launch.provider, gpu: launch.gpu, spot: launch.spot, error: launch.error };
}

/** A node with its recent health history. */
export interface NodeDetailJson extends NodeJson {
  health_checks: HealthCheckJson[];
}

/** One change of a node's health. */
export interface HealthCheckJson {
  object: "health_check";
  id: string;
  node_id: string;
  at: string;
  status: string;
  previous_status: string | null;
  detail: Record<string, unknown>;
}

/** A region with its node counts. */
export interface RegionJson {
  object: "region";
  id: string;
  name: string;
  /** Null until an admin sets them; nearest-region routing skips a region without coordinates. */
  latitude: number | null;
  longitude: number | null;
  price_multiplier: number;
  active: boolean;
  nodes_total: number;
  /** Nodes that may take new requests (see NodeJson.healthy). */
  nodes_healthy: number;
}

/** A capacity reservation. */
export interface ReservationJson {
  object: "capacity_reservation";
  id: string;
  tenant_id: string;
  model: string;
  tokens_per_second: number;
  node_ids: string[];
  created_at: string;
}

/** Live state of the fleet as Redis holds it. */
export interface FleetLive {
  live: Record<string, LiveNode>;
  circuits: Record<string, CircuitState>;
}

/** A circuit entry as stored, or undefined when it is missing or malformed. */
export function circuitState(value: unknown): CircuitState | undefined {
  if (!value || typeof value !== "object") return undefined;
  const { failures, openUntil } = value as Record<string, unknown>;
  return typeof failures === "number" && typeof openUntil === "number" ? { failures, openUntil } : undefined;
}

/** Whether a node may take new requests, by its admin status and live state (routing/pick.ts's rule, without the model). */
export function nodeHealthy(row: Pick<NodeRow, "status" | "lastHeartbeatAt">, live: LiveNode | undefined, now: number): boolean {
  if (row.status !== "active") return false;
  // A static node (never sent a heartbeat) is routed without liveness checks.
  if (!live) return row.lastHeartbeatAt === null;
  return !isStale(live, now) && (live.status === "ready" || live.status === "degraded");
}

/** Presents a node with its live state, circuit and (when it was launched through SkyPilot) launch. */
export function nodeJson(row: NodeRow, fleet: FleetLive, now: number, launch: typeof nodeLaunches.$inferSelect | null = null): NodeJson {
  const live = fleet.live[row.id];
  const circuit = fleet.circuits[row.id];
  const openUntil = circuit && circuit.openUntil > 0 ? new Date(circuit.openUntil).toISOString() : null;
  return {
    object: "node",
    id: row.id,
    region_id: row.regionId,
    url: row.url,
    models: row.models,
    status: row.status,
    secret_version: row.secretVersion,
    created_at: row.createdAt.toISOString(),
    last_heartbeat_at: row.lastHeartbeatAt === null ? null : row.lastHeartbeatAt.toISOString(),
    reported_status: live?.status ?? row.reportedStatus,
    stale: live ? isStale(live, now) : row.lastHeartbeatAt !== null,
    heartbeat_age_ms: live ? Math.max(0, now - live.at) : row.lastHeartbeatAt === null ? null : Math.max(0, now - row.lastHeartbeatAt.getTime()),
    heartbeat_interval_ms: live ? live.intervalMs : null,
    in_flight: live ? live.inFlight : null,
    capacity: live ? live.capacity : null,
    waiting: live ? live.waiting : null,
    running: live ? liveNumber(live, "running") : null,
    kv_cache_usage: live ? live.kvCacheUsage : null,
    recent_ttft_ms: live ? liveNumber(live, "recentTtftMs") : null,
    ttft_ewma_ms: live ? liveNumber(live, "ttftEwmaMs") : null,
    engines: (live?.engines ?? []).map((e) => ({
      id: e.id,
      kind: e.kind,
      healthy: e.healthy,
      circuit: e.circuit,
      in_flight: e.inFlight,
      max_concurrency: e.maxConcurrency,
      running: e.running,
      waiting: e.waiting,
      kv_cache_usage: e.kvCacheUsage,
      recent_ttft_ms: e.recentTtftMs,
    })),
    adapters: live?.adapters ?? [],
    circuit: circuitPhase(circuit, now),
    circuit_failures: circuit?.failures ?? 0,
    circuit_open_until: openUntil,
    healthy: nodeHealthy(row, live, now),
    launch: launch ? nodeLaunchJson(launch) : null,
  };
}

/** Presents a health check row. */
export function healthCheckJson(row: typeof healthChecks.$inferSelect): HealthCheckJson {
  return { object: "health_check", id: row.id, node_id: row.nodeId, at: row.at.toISOString(), status: row.status, previous_status: row.previousStatus, detail: row.detail };
}

/** Presents a region row with its node counts. */
export function regionJson(row: typeof regions.$inferSelect, counts: { total: number; healthy: number }): RegionJson {
  return {
    object: "region",
    id: row.id,
    name: row.name,
    latitude: row.latitude,
    longitude: row.longitude,
    price_multiplier: Number(row.priceMultiplier),
    active: row.active,
    nodes_total: counts.total,
    nodes_healthy: counts.healthy,
  };
}

/** Presents a reservation row. */
export function reservationJson(row: typeof capacityReservations.$inferSelect): ReservationJson {
  return {
    object: "capacity_reservation",
    id: row.id,
    tenant_id: row.tenantId,
    model: row.model,
    tokens_per_second: row.tokensPerSecond,
    node_ids: row.nodeIds,
    created_at: row.createdAt.toISOString(),
  };
}
