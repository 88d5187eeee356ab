/** `node …`, `region list` and `reservation …`: the fleet through the admin API (operator only). */
import type { HealthCheckJson, NodeDetailJson, NodeJson, RegionJson, ReservationJson } from "../src/nodes/admin-wire.ts";
import type { LaunchJson } from "../src/provisioning/launches.ts";
import { ROUTING_STRATEGIES, type RoutingStrategy } from "../src/routing/snapshot.ts";
import { fields, table } from "./format.ts";
import { hostCommands } from "./host.ts";
import { AdminUsageError, arg, flag, intFlag, list, listFlag, need, output, show, type Command, type CommandContext } from "./context.ts";

const enc = encodeURIComponent;

/** `--strategy S|none` of env and model commands: a node-choice strategy, null (none), or undefined (unchanged). */
export function strategyFlag(ctx: CommandContext): RoutingStrategy | null | undefined {
  const value = flag(ctx, "strategy");
  if (value === undefined) return undefined;
  if (value === "none") return null;
  const known = ROUTING_STRATEGIES.find((s) => s === value);
  if (!known) throw new AdminUsageError(`--strategy must be one of ${ROUTING_STRATEGIES.join(", ")} or none, got "${value}".`);
  return known;
}

/** `--region-overrides r1,r2|none` of env commands. */
export function regionOverridesFlag(ctx: CommandContext): string[] | null | undefined {
  if (flag(ctx, "region-overrides") === "none") return null;
  return listFlag(ctx, "region-overrides");
}

function percent(value: unknown): string {
  return typeof value === "number" ? `${Math.round(value * 100)}%` : "-";
}

function ms(value: unknown): string {
  return typeof value === "number" ? `${Math.round(value)}ms` : "-";
}

function load(inFlight: unknown, capacity: unknown): string {
  return typeof inFlight === "number" && typeof capacity === "number" ? `${inFlight}/${capacity}` : "-";
}

const NODE_HEADERS = ["ID", "REGION", "STATUS", "REPORTED", "STALE", "IN FLIGHT", "WAITING", "KV", "TTFT", "CIRCUIT"];
const nodeRow = (n: NodeJson) => [
  n.id,
  n.region_id,
  n.status,
  n.reported_status,
  n.stale ? "yes" : "no",
  load(n.in_flight, n.capacity),
  n.waiting,
  percent(n.kv_cache_usage),
  ms(n.recent_ttft_ms),
  n.circuit,
];
const checkRow = (h: HealthCheckJson) => [
  h.at,
  h.status,
  h.previous_status,
  load(h.detail.inFlight, h.detail.capacity),
  h.detail.waiting,
  percent(h.detail.kvCacheUsage),
  ms(h.detail.recentTtftMs),
];
const regionRow = (r: RegionJson) => [r.id, r.name, r.latitude, r.longitude, r.price_multiplier, r.active ? "yes" : "no", `${r.nodes_healthy}/${r.nodes_total}`];
/** A listed reservation also carries its tenant's live throughput (routing/reservations-admin.ts). */
type LiveReservationJson = ReservationJson & { delivered_tokens_per_second?: number | null; state?: string };
const reservationRow = (r: LiveReservationJson) => [r.id, r.tenant_id, r.model, r.tokens_per_second, r.delivered_tokens_per_second ?? "-", r.state ?? "-", r.node_ids, r.created_at];

function nodePath(ctx: CommandContext, suffix = ""): string {
  return `/nodes/${enc(arg(ctx, 0, "the node id"))}${suffix}`;
}


/** Fleet commands. */
export const fleetCommands: Record<string, Command> = {
  ...hostCommands,
  "node list": async (ctx) => {
    const body = await ctx.api().request<{ data: NodeJson[]; launches?: LaunchJson[] }>("GET", "/nodes");
    output(ctx, body, () => {
      ctx.print(body.data.length === 0 ? "(none)" : table(NODE_HEADERS, body.data.map(nodeRow)));
      // SkyPilot-launched nodes (docs/provisioning.md): the registered ones' launch states, then those not registered yet.
      const launched = [
        ...body.data.flatMap((n) => (n.launch ? [[n.id, n.launch.state, n.launch.provider, n.launch.gpu, n.launch.error ?? ""]] : [])),
        ...(body.launches ?? []).map((l) => [l.node_id, l.state, l.provider, l.gpu, l.error ?? ""]),
      ];
      if (launched.length > 0) ctx.print(`\nLaunched with SkyPilot:\n${table(["NODE", "LAUNCH", "PROVIDER", "GPU", "ERROR"], launched)}`);
    });
  },
  "node show": async (ctx) => {
    const body = await ctx.api().request<NodeDetailJson>("GET", nodePath(ctx));
    output(ctx, body, () => {
      const { health_checks: checks, ...node } = body;
      ctx.print(fields({ ...node }));
      ctx.print(`\nHealth history (newest first, last ${checks.length}):`);
      ctx.print(checks.length === 0 ? "(none)" : table(["AT", "STATUS", "PREVIOUS", "IN FLIGHT", "WAITING", "KV", "TTFT"], checks.map(checkRow)));
    });
  },
  "node drain": async (ctx) => show(ctx, await ctx.api().request<NodeJson>("POST", nodePath(ctx, "/drain"))),
  "node undrain": async (ctx) => show(ctx, await ctx.api().request<NodeJson>("POST", nodePath(ctx, "/undrain"))),
  "node remove": async (ctx) => {
    const id = arg(ctx, 0, "the node id");
    const body = await ctx.api().request<{ note: string }>("DELETE", `/nodes/${enc(id)}`);
    output(ctx, body, () => {
      ctx.print(`Removed node ${id}.`);
      ctx.warn(body.note);
    });
  },

  "node adapters": async (ctx) => {
    const body = await ctx.api().request<{ data: { name: string; base: string; source: string | null; engine: string }[] }>("GET", nodePath(ctx, "/adapters"));
    output(ctx, body, () => ctx.print(body.data.length === 0 ? "(none)" : table(["ENGINE", "ADAPTER", "BASE", "SOURCE"], body.data.map((a) => [a.engine, a.name, a.base, a.source]))));
  },
  "node adapter-load": async (ctx) => {
    const name = arg(ctx, 1, "the adapter (a catalogue model with a base model)");
    const body = await ctx.api().request<{ name: string; engine: string; status: string }>("POST", nodePath(ctx, "/adapters"), { name, source: flag(ctx, "source") });
    output(ctx, body, () => ctx.print(`${body.status === "already_loaded" ? "Already loaded" : "Loaded"} ${body.name} on engine ${body.engine} of node ${arg(ctx, 0, "the node id")}.`));
  },
  "node adapter-unload": async (ctx) => {
    const name = arg(ctx, 1, "the adapter name");
    const body = await ctx.api().request<{ engines: string[] }>("DELETE", nodePath(ctx, `/adapters/${enc(name)}`));
    output(ctx, body, () => ctx.print(`Unloaded ${name} from ${body.engines.join(", ")} on node ${arg(ctx, 0, "the node id")}.`));
  },

  "region list": async (ctx) => {
    const body = await ctx.api().request<{ data: RegionJson[] }>("GET", "/regions");
    output(ctx, body, () =>
      ctx.print(body.data.length === 0 ? "(none)" : table(["ID", "NAME", "LAT", "LON", "MULTIPLIER", "ACTIVE", "HEALTHY/NODES"], body.data.map(regionRow))),
    );
  },

  "reservation add": async (ctx) => {
    const tps = intFlag(ctx, "tps");
    if (tps === undefined) throw new AdminUsageError("Missing --tps (tokens per second). Run with --help for usage.");
    const nodeIds = listFlag(ctx, "nodes") ?? [];
    if (nodeIds.length === 0) throw new AdminUsageError("Missing --nodes n1,n2 (the nodes that serve the reservation first).");
    const body = await ctx.api().request<ReservationJson>("POST", "/reservations", {
      tenant_id: need(ctx, "tenant"),
      model: need(ctx, "model"),
      tokens_per_second: tps,
      node_ids: nodeIds,
    });
    output(ctx, body, () => {
      ctx.warn(`Created reservation:\n${fields({ ...body })}`);
      ctx.print(body.id);
    });
  },
  "reservation list": (ctx) => {
    const params = new URLSearchParams();
    const tenant = flag(ctx, "tenant");
    const model = flag(ctx, "model");
    if (tenant) params.set("tenant_id", tenant);
    if (model) params.set("model", model);
    return list(ctx, params.size > 0 ? `/reservations?${params.toString()}` : "/reservations", ["ID", "TENANT", "MODEL", "TOKENS/S", "DELIVERED/S", "STATE", "NODES", "CREATED"], reservationRow);
  },
  "reservation delete": async (ctx) => {
    const id = arg(ctx, 0, "the reservation id");
    const body = await ctx.api().request<object>("DELETE", `/reservations/${enc(id)}`);
    output(ctx, body, () => ctx.print(`Deleted reservation ${id}.`));
  },
};
