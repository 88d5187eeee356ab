/** @jsxImportSource hono/jsx */
/**
 * The fleet (`/dashboard/fleet`, operator only): regions with their nodes' health, load, circuit and
 * last heartbeat; a node's page with its engines and health history; drain / undrain; capacity
 * reservations. Everything through `/admin/regions`, `/admin/nodes` and `/admin/reservations`.
 */
import { Hono } from "hono";
import type { ListBody } from "../../admin/pagination.ts";
import type { TenantJson } from "../../admin/wire.ts";
import { ApiError } from "../../errors.ts";
import type { NodeDetailJson, NodeJson, RegionJson, ReservationJson } from "../../nodes/admin-wire.ts";
import { adminCall, adminGet, adminList } from "../bridge.ts";
import { sessionOf, type DashboardContext, type DashboardEnv } from "../env.ts";
import { formOf, redirectWith, safeNext, takeFlash } from "../http.ts";
import { Page, num } from "../ui.tsx";
import { FLEET, RegionSection, healthOf } from "./fleet-parts.tsx";
import { NodeDetail } from "./fleet-node.tsx";
import { ReservationsSection } from "./fleet-reservations.tsx";
import { LaunchesSection } from "./fleet-launches.tsx";
import type { LaunchJson } from "../../provisioning/launches.ts";

const RESERVATIONS_SHOWN = 200;

/** Where a drain / undrain returns: the fleet page or a node page (never elsewhere). */
function backTo(value: string | undefined): string {
  return value !== undefined && value.startsWith(FLEET) && safeNext(value) === value ? value : FLEET;
}

/** Nodes grouped by region, in the region list's order (a node's region missing from it comes last). */
function byRegion(regions: RegionJson[], nodes: NodeJson[]): { regionId: string; region: RegionJson | null; nodes: NodeJson[] }[] {
  const groups = new Map<string, { regionId: string; region: RegionJson | null; nodes: NodeJson[] }>();
  for (const r of regions) groups.set(r.id, { regionId: r.id, region: r, nodes: [] });
  for (const n of nodes) {
    const group = groups.get(n.region_id) ?? { regionId: n.region_id, region: null, nodes: [] };
    group.nodes.push(n);
    groups.set(n.region_id, group);
  }
  return [...groups.values()];
}

async function fleetPage(c: DashboardContext): Promise<Response> {
  const session = sessionOf(c);
  const [regions, nodes, reservations, tenants, models] = await Promise.all([
    adminList<RegionJson>(c, session, "/admin/regions").then((l) => ({ data: l.items })),
    // Not paged: every node, and the launches whose node has not registered yet.
    adminGet<ListBody<NodeJson> & { launches?: LaunchJson[] }>(c, session, "/admin/nodes"),
    adminGet<ListBody<ReservationJson>>(c, session, `/admin/reservations?limit=${RESERVATIONS_SHOWN}`),
    // Only suggestions for the reservation form: the page works without them.
    adminCall<ListBody<TenantJson>>(c, session, "GET", "/admin/tenants?limit=200"),
    adminCall<ListBody<{ id: string }>>(c, session, "GET", "/admin/models"),
  ]);
  const now = Date.now();
  const all = nodes.data;
  const count = (test: (n: NodeJson) => boolean) => num(all.filter(test).length);
  return c.html(
    <Page title="Fleet" session={session} current="/fleet" flash={takeFlash(c)}>
      <h1>Fleet</h1>
      <div class="cards">
        <div class="card">
          <div class="label">Regions</div>
          <div class="value">{num(regions.data.length)}</div>
        </div>
        <div class="card">
          <div class="label">Nodes</div>
          <div class="value">{num(all.length)}</div>
        </div>
        <div class="card">
          <div class="label">Taking new requests</div>
          <div class="value">{count((n) => n.healthy)}</div>
        </div>
        <div class="card">
          <div class="label">Draining or disabled</div>
          <div class="value">{count((n) => n.status !== "active")}</div>
        </div>
        <div class="card">
          <div class="label">Stale or unhealthy</div>
          <div class="value">{count((n) => ["stale", "unhealthy"].includes(healthOf(n).text))}</div>
        </div>
        <div class="card">
          <div class="label">Open circuits</div>
          <div class="value">{count((n) => n.circuit !== "closed")}</div>
        </div>
      </div>
      <section aria-labelledby="regions">
        <h2 id="regions">Regions and nodes</h2>
        <p class="muted">
          Load is from each node's last heartbeat. Draining stops new requests to a node; requests in flight finish. A stale node missed three heartbeats and gets no
          traffic until it reports again.
        </p>
        {all.length === 0 && regions.data.length === 0 && <p>No regions or nodes yet: a backplane registers its node and region with its first heartbeat.</p>}
        {byRegion(regions.data, all).map((g) => (
          <RegionSection session={session} region={g.region} regionId={g.regionId} nodes={g.nodes} now={now} />
        ))}
      </section>
      <LaunchesSection launches={nodes.launches ?? []} />
      <ReservationsSection
        session={session}
        reservations={reservations.data}
        more={reservations.next_cursor !== null}
        choices={{
          tenants: tenants.ok ? tenants.data.data.map((t) => ({ id: t.id, name: t.name })) : [],
          models: models.ok ? models.data.data.map((m) => m.id) : [],
          nodes: all,
        }}
      />
    </Page>,
  );
}

async function setDrain(c: DashboardContext, drain: boolean): Promise<Response> {
  const session = sessionOf(c);
  const id = c.req.param("id") ?? "";
  const back = backTo((await formOf(c)).back);
  const answer = await adminCall<NodeJson>(c, session, "POST", `/admin/nodes/${encodeURIComponent(id)}/${drain ? "drain" : "undrain"}`);
  if (!answer.ok) return redirectWith(c, answer.status === 404 ? FLEET : back, { kind: "error", text: answer.error.message });
  const text = drain
    ? `Node ${id} is draining: it takes no new requests; requests in flight finish.`
    : `Node ${id} is active again: it takes new requests while it is healthy.`;
  return redirectWith(c, back, { kind: "ok", text });
}

async function createReservation(c: DashboardContext): Promise<Response> {
  const session = sessionOf(c);
  const back = `${FLEET}#reservations`;
  const form = await formOf(c);
  // Checkboxes send node_ids once per ticked node; formOf keeps one value per name.
  const nodeIds = [(await c.req.parseBody({ all: true })).node_ids].flat().filter((v): v is string => typeof v === "string" && v !== "");
  const tps = (form.tokens_per_second ?? "").trim();
  if (!/^\d{1,9}$/.test(tps)) return redirectWith(c, back, { kind: "error", text: "Tokens per second must be a whole number from 1 to 100,000,000." });
  if (nodeIds.length === 0) return redirectWith(c, back, { kind: "error", text: "Tick at least one node to serve the reservation first." });
  const body = { tenant_id: (form.tenant_id ?? "").trim(), model: (form.model ?? "").trim(), tokens_per_second: Number(tps), node_ids: nodeIds };
  const answer = await adminCall<ReservationJson>(c, session, "POST", "/admin/reservations", body);
  if (!answer.ok) return redirectWith(c, back, { kind: "error", text: answer.error.message });
  const r = answer.data;
  return redirectWith(c, back, { kind: "ok", text: `Reserved ${num(r.tokens_per_second)} tokens/s of ${r.model} for ${r.tenant_id} on ${r.node_ids.join(", ")} (${r.id}).` });
}

async function deleteReservation(c: DashboardContext): Promise<Response> {
  const session = sessionOf(c);
  const id = c.req.param("id") ?? "";
  const back = `${FLEET}#reservations`;
  const answer = await adminCall(c, session, "DELETE", `/admin/reservations/${encodeURIComponent(id)}`);
  if (!answer.ok) return redirectWith(c, back, { kind: "error", text: answer.error.message });
  return redirectWith(c, back, { kind: "ok", text: `Reservation ${id} deleted: its tenant's traffic now shares the fleet.` });
}

/** The fleet pages, mounted at `/dashboard/fleet`. */
export const fleetPages = new Hono<DashboardEnv>()
  .use(async (c, next) => {
    // The admin API refuses tenants too; saying so here gives one clear page for every fleet URL.
    if (sessionOf(c).actor.kind !== "operator") {
      throw new ApiError("permission_denied", "The fleet is the operator's: regions, GPU nodes and reservations are shared by every tenant. Sign in with the admin token to manage them.");
    }
    await next();
  })
  .get("/", fleetPage)
  .get("/nodes/:id", async (c) => {
    const session = sessionOf(c);
    const node = await adminGet<NodeDetailJson>(c, session, `/admin/nodes/${encodeURIComponent(c.req.param("id"))}`);
    return c.html(
      <Page title={`Node ${node.id}`} session={session} current="/fleet" flash={takeFlash(c)}>
        <NodeDetail session={session} node={node} now={Date.now()} />
      </Page>,
    );
  })
  .post("/nodes/:id/drain", (c) => setDrain(c, true))
  .post("/nodes/:id/undrain", (c) => setDrain(c, false))
  .post("/reservations", createReservation)
  .post("/reservations/:id/delete", deleteReservation);
