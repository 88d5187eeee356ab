import { exports } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { inject } from "vitest";
import { HEARTBEAT_PATH, SPOT_PATH, type Heartbeat } from "../../schema/contracts/heartbeat.ts";
import { NODE_HEADER } from "../../schema/contracts/signing.ts";
import { auditLogs, nodes, regions, spotEvents } from "../../schema/tables/index.ts";
import { beat as fleetBeat, sendNodeRequest, signedNodeHeaders, signedNodeRequest } from "./fleet-helpers.ts";
import { eventually, post, query } from "./helpers.ts";

const signed = signedNodeRequest;

function beat(overrides: Partial<Omit<Heartbeat, "nodeId" | "engines">> = {}): Heartbeat {
  const hb = inject("hbNode");
  const fields = { region: "hb-region", url: hb.url, models: ["hb-model"], intervalMs: 200, ...overrides };
  return fleetBeat(hb.id, fields, { promptTokensTotal: 0, generationTokensTotal: 0 });
}

const request = { model: "hb-model", messages: [{ role: "user", content: "hi" }], max_tokens: 2 };

describe("node heartbeats", () => {
  it("refuses unsigned, wrongly signed and malformed heartbeats", async () => {
    const unsigned = await exports.default.fetch(
      new Request(`http://gateway.test${HEARTBEAT_PATH}`, { method: "POST", body: JSON.stringify(beat()), headers: { [NODE_HEADER]: inject("hbNode").id } }),
    );
    expect(unsigned.status).toBe(401);
    const wrong = await signed(HEARTBEAT_PATH, inject("hbNode").id, beat(), "x".repeat(64));
    expect(wrong.status).toBe(401);
    expect((await wrong.json<{ error: { message: string } }>()).error.message).toContain("node secret");
    const bad = await signed(HEARTBEAT_PATH, inject("hbNode").id, { ...beat(), status: "sleepy" });
    expect(bad.status).toBe(400);
    expect((await bad.json<{ error: { param: string } }>()).error.param).toBe("status");
  });

  it("refuses a captured heartbeat replayed at once and 5 s later with 401, while fresh heartbeats are taken", async () => {
    // A node of its own (and a model nobody asks for), so the registration test below still starts from scratch.
    const nodeId = "hb-replay";
    const replayBeat = () => fleetBeat(nodeId, { region: "hb-region", url: inject("hbNode").url, models: ["hb-replay-model"], intervalMs: 60_000 });
    const raw = JSON.stringify(replayBeat());
    const captured = await signedNodeHeaders(HEARTBEAT_PATH, nodeId, raw);
    expect((await sendNodeRequest(HEARTBEAT_PATH, raw, captured)).status).toBe(200);
    for (const wait of [0, 5_000]) {
      await new Promise((resolve) => setTimeout(resolve, wait));
      const replay = await sendNodeRequest(HEARTBEAT_PATH, raw, captured);
      expect(replay.status).toBe(401);
      const body = await replay.json<{ error: { message: string; code: string } }>();
      expect(body.error.code).toBe("invalid_api_key");
      expect(body.error.message).toContain("replayed");
    }
    const fresh = await signed(HEARTBEAT_PATH, nodeId, replayBeat());
    expect(fresh.status).toBe(200);
    await fresh.arrayBuffer();
  }, 20_000);

  it("refuses a heartbeat signed with the old v1 scheme (no nonce)", async () => {
    const nodeId = inject("hbNode").id;
    const raw = JSON.stringify(beat());
    // Refused before anything is recorded, so the node stays unregistered.
    const { "x-switchyard-nonce": _nonce, ...headers } = await signedNodeHeaders(HEARTBEAT_PATH, nodeId, raw);
    const res = await sendNodeRequest(HEARTBEAT_PATH, raw, { ...headers, "x-switchyard-signature": (headers["x-switchyard-signature"] ?? "").replace("v2=", "v1=") });
    expect(res.status).toBe(401);
    expect((await res.json<{ error: { message: string } }>()).error.message).toContain("v1");
  });

  it("registers a new node from its first heartbeat, routes to it while fresh, and stops when it goes stale or drains", async () => {
    const nodeId = inject("hbNode").id;
    const before = await post("/v1/chat/completions", request);
    expect(before.status).toBe(503);
    await before.arrayBuffer();

    const res = await signed(HEARTBEAT_PATH, nodeId, beat());
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ ok: true, staleAfterMs: 600 });
    const row = await eventually(() => query(async (db) => (await db.select().from(nodes).where(eq(nodes.id, nodeId)))[0]));
    expect(row).toMatchObject({ regionId: "hb-region", url: inject("hbNode").url, models: ["hb-model"], reportedStatus: "ready" });
    expect(row.lastHeartbeatAt).toBeInstanceOf(Date);
    const region = await query(async (db) => (await db.select().from(regions).where(eq(regions.id, "hb-region")))[0]);
    expect(region).toMatchObject({ latitude: null, longitude: null });
    const audit = await query((db) => db.select().from(auditLogs).where(eq(auditLogs.targetId, nodeId)));
    expect(audit.map((a) => a.action)).toContain("node.register");

    await new Promise((r) => setTimeout(r, 1_100)); // routing isolate cache (1 s in tests)
    await signed(HEARTBEAT_PATH, nodeId, beat());
    const served = await post("/v1/chat/completions", request);
    expect(served.status).toBe(200);
    expect(served.headers.get("x-switchyard-node")).toBe(nodeId);
    await served.arrayBuffer();

    // Three missed 200 ms beats: stale, no traffic.
    await new Promise((r) => setTimeout(r, 1_200));
    const stale = await post("/v1/chat/completions", request);
    expect(stale.status).toBe(503);
    await stale.arrayBuffer();

    // Back, then draining: no traffic either.
    await signed(HEARTBEAT_PATH, nodeId, beat());
    await new Promise((r) => setTimeout(r, 1_100));
    await signed(HEARTBEAT_PATH, nodeId, beat());
    const again = await post("/v1/chat/completions", request);
    expect(again.status).toBe(200);
    await again.arrayBuffer();
    await signed(HEARTBEAT_PATH, nodeId, beat({ status: "draining", intervalMs: 60_000 }));
    await new Promise((r) => setTimeout(r, 1_100));
    const drained = await post("/v1/chat/completions", request);
    expect(drained.status).toBe(503);
    await drained.arrayBuffer();
  });

  it("marks a node draining at once on a spot notice and records the event", async () => {
    const nodeId = inject("hbNode").id;
    await signed(HEARTBEAT_PATH, nodeId, beat({ intervalMs: 60_000 }));
    await new Promise((r) => setTimeout(r, 1_100));
    const ok = await post("/v1/chat/completions", request);
    expect(ok.status).toBe(200);
    await ok.arrayBuffer();

    const deadline = new Date(Date.now() + 120_000).toISOString();
    const res = await signed(SPOT_PATH, nodeId, {
      nodeId,
      provider: "aws",
      action: "terminate",
      deadline,
      noticedAt: new Date().toISOString(),
      detail: { action: "terminate", time: deadline },
    });
    expect(res.status).toBe(202);
    const after = await post("/v1/chat/completions", request);
    expect(after.status).toBe(503);
    await after.arrayBuffer();
    const events = await eventually(async () => {
      const rows = await query((db) => db.select().from(spotEvents).where(eq(spotEvents.nodeId, nodeId)));
      return rows.length > 0 ? rows : undefined;
    });
    expect(events[0]).toMatchObject({ provider: "aws", action: "terminate" });
    expect(events[0]?.deadline?.toISOString()).toBe(deadline);
  });
});
