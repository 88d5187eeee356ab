/**
 * The fleet's gauges in `GET /admin/metrics` (docs/operations.md#metrics), computed when scraped
 * from the node registry (Postgres) and the nodes' live heartbeat state and circuits (Redis): which
 * node is up, its load, its KV cache use and its circuit. One scrape costs one query and one Redis
 * round trip, off the request path.
 */
import { nodes } from "../../../schema/tables/index.ts";
import type { AdminContext } from "../admin/http.ts";
import { LIVE_UNAVAILABLE_HEADER, readFleetLive } from "../nodes/admin-state.ts";
import { isStale } from "../nodes/live.ts";
import { circuitPhase } from "../routing/breaker.ts";
import { FLEET_GAUGES } from "./metric-names.ts";

type Gauge = keyof typeof FLEET_GAUGES;

/**
 * The fleet gauges as Prometheus text ("" when the registry cannot be read: the scrape shows the
 * rest), and whether the registry (Postgres) and the live state (Redis) could be read.
 */
export async function renderFleetGauges(c: AdminContext): Promise<{ text: string; registryOk: boolean; liveOk: boolean }> {
  const [registry, fleetLive] = await Promise.all([
    c
      .get("deps")
      .db((db) => db.select({ id: nodes.id, regionId: nodes.regionId, status: nodes.status }).from(nodes))
      .catch((err: unknown) => {
        c.get("deps").log("metrics_fleet_unavailable", { error: String(err) });
        return null;
      }),
    readFleetLive(c),
  ]);
  const liveOk = c.res.headers.get(LIVE_UNAVAILABLE_HEADER) === null;
  if (registry === null) return { text: "", registryOk: false, liveOk };
  const { live, circuits } = fleetLive;
  const now = Date.now();
  const values: Record<Gauge, string[]> = Object.fromEntries(Object.keys(FLEET_GAUGES).map((k) => [k, [] as string[]])) as unknown as Record<Gauge, string[]>;
  for (const node of registry.sort((a, b) => a.id.localeCompare(b.id))) {
    const labels = `{node="${node.id}",region="${node.regionId}"}`;
    const state = live[node.id];
    const fresh = state !== undefined && !isStale(state, now);
    const up = node.status === "active" && fresh && (state.status === "ready" || state.status === "degraded");
    values.switchyard_node_up.push(`switchyard_node_up${labels} ${up ? 1 : 0}`);
    values.switchyard_node_draining.push(`switchyard_node_draining${labels} ${node.status === "draining" || (fresh && state.status === "draining") ? 1 : 0}`);
    values.switchyard_node_circuit_open.push(`switchyard_node_circuit_open${labels} ${circuitPhase(circuits[node.id], now) === "closed" ? 0 : 1}`);
    if (!state) continue;
    values.switchyard_node_heartbeat_age_seconds.push(`switchyard_node_heartbeat_age_seconds${labels} ${Math.max(0, (now - state.at) / 1000)}`);
    values.switchyard_node_in_flight.push(`switchyard_node_in_flight${labels} ${state.inFlight}`);
    values.switchyard_node_capacity.push(`switchyard_node_capacity${labels} ${state.capacity}`);
    if (state.waiting !== null) values.switchyard_node_waiting_requests.push(`switchyard_node_waiting_requests${labels} ${state.waiting}`);
    if (state.running !== null && state.running !== undefined) values.switchyard_node_running_requests.push(`switchyard_node_running_requests${labels} ${state.running}`);
    if (state.kvCacheUsage !== null) values.switchyard_node_kv_cache_usage_ratio.push(`switchyard_node_kv_cache_usage_ratio${labels} ${state.kvCacheUsage}`);
  }
  const lines: string[] = [];
  for (const [name, help] of Object.entries(FLEET_GAUGES) as [Gauge, string][]) lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, ...values[name]);
  return { text: `${lines.join("\n")}\n`, registryOk: true, liveOk };
}
