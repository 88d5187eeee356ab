import { exports } from "cloudflare:workers";
import { afterEach, describe, expect, inject, it } from "vitest";
import type { NodeDetailJson, ReservationJson } from "../../worker/src/nodes/admin-wire.ts";
import { admin, expectStatus, sandbox, type List } from "./admin-helpers.ts";
import { getPage, postForm, signIn, type Browser } from "./dashboard-helpers.ts";
import { beat, freshId as freshName, sendHeartbeat } from "./fleet-helpers.ts";
import { eventually } from "./helpers.ts";

const DEAD_URL = "http://127.0.0.1:9";
const created: string[] = [];

/** A fresh node id, removed after the test (so no shared node is ever drained here). */
function freshId(prefix: string): string {
  const id = freshName(prefix);
  created.push(id);
  return id;
}

afterEach(async () => {
  for (const id of created.splice(0)) await admin("DELETE", `/nodes/${id}`);
});

async function nodeOf(id: string): Promise<NodeDetailJson | undefined> {
  const res = await admin<NodeDetailJson>("GET", `/nodes/${id}`);
  return res.status === 200 ? res.body : undefined;
}

/** The HTML of a node's row in its region's table. */
function rowOf(html: string, id: string): string {
  const row = new RegExp(`<tr><th scope="row"><a href="/dashboard/fleet/nodes/${id}">${id}</a></th>(.*?)</tr>`).exec(html)?.[1];
  if (row === undefined) throw new Error(`no row for ${id} in the page`);
  return row;
}

/** A heartbeating node in a fresh region, registered before returning. */
async function liveNode(prefix: string, load: Parameters<typeof beat>[2] = {}): Promise<{ id: string; region: string }> {
  const id = freshId(prefix);
  const region = freshName("dash-r");
  await sendHeartbeat(beat(id, { region, url: DEAD_URL, models: ["fleet-model"] }, load));
  await eventually(() => nodeOf(id));
  return { id, region };
}

describe("dashboard fleet", () => {
  it("lists a live node with its load in its region, and drains and undrains it from the pages", async () => {
    const { id, region } = await liveNode("dash-fleet", { inFlight: 2, running: 2, waiting: 3, kvCacheUsage: 0.42, recentTtftMs: 120 });
    const b = await signIn();
    try {
      const page = await getPage(b, "/dashboard/fleet");
      expect(page.status).toBe(200);
      expect(page.html).toContain("<h1>Fleet</h1>");
      expect(page.html).toContain(`<h3 id="region-${region}">${region} (${region})</h3>`);
      const row = rowOf(page.html, id);
      expect(row).toContain('<span class="badge ok">active</span>');
      expect(row).toContain('<span class="badge ok">ready</span>');
      expect(row).toContain("takes new requests");
      expect(row).toContain('<td class="num">3</td><td class="num">2</td><td class="num">2 / 8</td>');
      expect(row).toContain('aria-label="KV cache 42% used"');
      expect(row).toContain('<span class="badge ok">closed</span>');
      expect(row).toMatch(/<time datetime="[^"]+"/);
      expect(row).toContain("fleet-model");
      expect(row).toContain(`Drain ${id}`);
      // The seeded static node (no heartbeats) is listed too, as static.
      expect(rowOf(page.html, inject("liveNodeId"))).toContain('<span class="badge">static</span>');

      const drained = await postForm(b, `/dashboard/fleet/nodes/${id}/drain`, { back: "/dashboard/fleet" });
      expect(drained.status).toBe(303);
      expect(drained.location).toBe("/dashboard/fleet");
      expect((await nodeOf(id))?.status).toBe("draining");
      const after = await getPage(b, "/dashboard/fleet");
      expect(after.html).toContain(`Node ${id} is draining`);
      const drainedRow = rowOf(after.html, id);
      expect(drainedRow).toContain('<span class="badge warn">draining</span>');
      expect(drainedRow).toContain("no new requests");
      expect(drainedRow).toContain(`Undrain ${id}`);

      // Undrain from the node's own page, which it returns to.
      const nodePage = await getPage(b, `/dashboard/fleet/nodes/${id}`);
      expect(nodePage.html).toContain(`Undrain ${id}`);
      const undrained = await postForm(b, `/dashboard/fleet/nodes/${id}/undrain`, { back: `/dashboard/fleet/nodes/${id}` });
      expect(undrained.location).toBe(`/dashboard/fleet/nodes/${id}`);
      expect((await nodeOf(id))?.status).toBe("active");
      const back = await getPage(b, `/dashboard/fleet/nodes/${id}`);
      expect(back.html).toContain(`Node ${id} is active again`);
      expect(back.html).toContain(`Drain ${id}`);

      // A redirect elsewhere is refused: the form returns to the fleet page.
      const elsewhere = await postForm(b, `/dashboard/fleet/nodes/${id}/undrain`, { back: "https://evil.example/" });
      expect(elsewhere.location).toBe("/dashboard/fleet");
      const missing = await postForm(b, "/dashboard/fleet/nodes/no-such-node/drain", { back: "/dashboard/fleet/nodes/no-such-node" });
      expect(missing.location).toBe("/dashboard/fleet");
      expect((await getPage(b, "/dashboard/fleet")).html).toContain("No node with id no-such-node.");
    } finally {
      await admin("POST", `/nodes/${id}/undrain`);
    }
  });

  it("shows a node's health history, newest first, with its load as charts and a table", async () => {
    const { id, region } = await liveNode("dash-hist", { waiting: 1, kvCacheUsage: 0.2, recentTtftMs: 80 });
    const fields = { region, url: DEAD_URL, models: ["fleet-model"] };
    await sendHeartbeat(beat(id, { ...fields, status: "degraded" }, { waiting: 9, kvCacheUsage: 0.97, recentTtftMs: 900 }));
    await sendHeartbeat(beat(id, { ...fields, status: "ready" }, { waiting: 0, kvCacheUsage: 0.3, recentTtftMs: 90 }));
    // Health checks are written after the heartbeat's answer (waitUntil).
    await eventually(async () => ((await nodeOf(id))?.health_checks.length === 3 ? true : undefined));

    const b = await signIn();
    const page = await getPage(b, `/dashboard/fleet/nodes/${id}`);
    expect(page.status).toBe(200);
    expect(page.html).toContain(`<h1>Node ${id}</h1>`);
    expect(page.html).toContain("<h2>Health history</h2>");
    const history = page.html.slice(page.html.indexOf("<caption>Health changes, newest first</caption>"));
    const statuses = [...history.matchAll(/<td><span class="badge[^"]*">([a-z]+)<\/span><\/td><td>([^<]*|<span class="muted">first seen<\/span>)<\/td>/g)].map((m) => [m[1], m[2]]);
    expect(statuses).toEqual([
      ["ready", "degraded"],
      ["degraded", "ready"],
      ["ready", '<span class="muted">first seen</span>'],
    ]);
    expect(history).toContain('<td class="num">9</td>');
    expect(history).toContain('<td class="num">97%</td>');
    expect(history).toContain('<td class="num">900 ms</td>');
    // Charts go through the shared Chart (uPlot data plus its table twin), oldest first.
    expect(page.html).toContain('id="node-kv"');
    expect(page.html).toContain('id="node-ttft"');
    const kv = /data-chart="([^"]+)" id="node-kv"/.exec(page.html)?.[1];
    const data = JSON.parse((kv ?? "{}").replaceAll("&quot;", '"')) as { series: { label: string; values: number[] }[] };
    expect(data.series[0]?.values).toEqual([20, 97, 30]);
    // The engine's live load.
    expect(page.html).toContain("<caption>Engines, from the last heartbeat</caption>");
    expect(page.html).toContain("sim-0");

    expect((await getPage(b, "/dashboard/fleet/nodes/no-such-node")).status).toBe(404);
  });

  it("creates a reservation on the nodes ticked, lists it, and deletes it", async () => {
    const first = await liveNode("dash-res");
    const second = await liveNode("dash-res");
    const tenantId = inject("tenantId");
    const b = await signIn();
    let reservationId: string | undefined;
    try {
      const page = await getPage(b, "/dashboard/fleet");
      expect(page.html).toContain('<h2 id="reservations">Reservations</h2>');
      expect(page.html).toContain(`<input type="checkbox" name="node_ids" value="${first.id}"/>`);

      const res = await postRaw(b, "/dashboard/fleet/reservations", [
        ["tenant_id", tenantId],
        ["model", "sim-llama-8b"],
        ["tokens_per_second", "250"],
        ["node_ids", first.id],
        ["node_ids", second.id],
      ]);
      expect(res.status).toBe(303);
      expect(res.headers.get("location")).toBe("/dashboard/fleet#reservations");
      const list = expectStatus(await admin<List<ReservationJson>>("GET", `/reservations?tenant_id=${tenantId}&limit=200`), 200);
      const made = list.data.find((r) => r.node_ids.includes(first.id));
      reservationId = made?.id;
      expect(made).toMatchObject({ tenant_id: tenantId, model: "sim-llama-8b", tokens_per_second: 250, node_ids: [first.id, second.id] });

      const listed = await getPage(b, "/dashboard/fleet");
      expect(listed.html).toContain(`Reserved 250 tokens/s of sim-llama-8b for ${tenantId}`);
      expect(listed.html).toContain(`<th scope="row" class="mono">${reservationId}</th>`);
      expect(listed.html).toContain(`${first.id}, ${second.id}`);
      expect(listed.html).toContain(`Delete reservation ${reservationId}`);

      // Refusals come back as messages on the page.
      await postForm(b, "/dashboard/fleet/reservations", { tenant_id: tenantId, model: "sim-llama-8b", tokens_per_second: "10" });
      expect((await getPage(b, "/dashboard/fleet")).html).toContain("Tick at least one node");
      await postForm(b, "/dashboard/fleet/reservations", { tenant_id: "ten_nobody", model: "sim-llama-8b", tokens_per_second: "10", node_ids: first.id });
      expect((await getPage(b, "/dashboard/fleet")).html).toContain("Unknown tenant ten_nobody.");

      const deleted = await postForm(b, `/dashboard/fleet/reservations/${reservationId}/delete`);
      expect(deleted.status).toBe(303);
      expect((await admin("GET", `/reservations/${reservationId}`)).status).toBe(404);
      const gone = await getPage(b, "/dashboard/fleet");
      expect(gone.html).toContain(`Reservation ${reservationId} deleted`);
      expect(gone.html).not.toContain(`<th scope="row" class="mono">${reservationId}</th>`);
      reservationId = undefined;
    } finally {
      if (reservationId) await admin("DELETE", `/reservations/${reservationId}`);
    }
  });

  it("refuses the fleet to a tenant admin with a 403 page, and changes nothing", async () => {
    const { id } = await liveNode("dash-403");
    const s = await sandbox();
    const b = await signIn(s.adminKey);
    const home = await getPage(b, "/dashboard");
    expect(home.html).not.toContain('href="/dashboard/fleet"');

    const page = await getPage(b, "/dashboard/fleet");
    expect(page.status).toBe(403);
    expect(page.html).toContain("The fleet is the operator&#39;s");
    expect(page.html).not.toContain(id);
    expect((await getPage(b, `/dashboard/fleet/nodes/${id}`)).status).toBe(403);

    const drain = await postForm(b, `/dashboard/fleet/nodes/${id}/drain`, { back: "/dashboard/fleet" });
    expect(drain.status).toBe(403);
    expect((await nodeOf(id))?.status).toBe("active");
    const reserve = await postForm(b, "/dashboard/fleet/reservations", { tenant_id: s.tenantId, model: "sim-llama-8b", tokens_per_second: "10", node_ids: id });
    expect(reserve.status).toBe(403);
    const mine = expectStatus(await admin<List<ReservationJson>>("GET", `/reservations?tenant_id=${s.tenantId}`), 200);
    expect(mine.data).toEqual([]);
  });
});

/** POSTs a form with repeated fields (checkboxes), as the signed-in browser. */
async function postRaw(b: Browser, path: string, fields: [string, string][]): Promise<Response> {
  const form = new URLSearchParams([["_csrf", b.csrf], ...fields]);
  const cookie = [...b.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
  const res = await exports.default.fetch(
    new Request(`http://gateway.test${path}`, {
      method: "POST",
      headers: { cookie, "content-type": "application/x-www-form-urlencoded", origin: "http://gateway.test" },
      body: form.toString(),
      redirect: "manual",
    }),
  );
  // Keep the one-time message for the next page, as a browser would.
  for (const line of res.headers.getSetCookie()) {
    const [pair] = line.split(";");
    const eq = (pair ?? "").indexOf("=");
    if (eq > 0) b.cookies.set((pair ?? "").slice(0, eq), (pair ?? "").slice(eq + 1));
  }
  await res.arrayBuffer();
  return res;
}

describe("fleet page: launches", () => {
  it("lists a SkyPilot launch on its way, with its state, until its node registers", async () => {
    const launched = await admin<{ data: { node_id: string; state: string }[] }>("POST", "/nodes/launch", { provider: "aws", region: "us-east-1", model: "sim-llama-8b", gpu: "A10G", count: 1, spot: true });
    expect(launched.status).toBe(201);
    const nodeId = launched.body.data[0]?.node_id ?? "";
    try {
      const b = await signIn();
      const page = await getPage(b, "/dashboard/fleet");
      expect(page.html).toContain("Launches on their way");
      expect(page.html).toContain(nodeId);
      expect(page.html).toMatch(/<td>pending<\/td>/);
      expect(page.html).toContain("aws us-east-1, A10G spot");
    } finally {
      await admin("POST", `/nodes/${nodeId}/terminate`);
    }
  });
});
