import { env } from "cloudflare:test";
import { and, eq } from "drizzle-orm";
import { afterEach, describe, expect, inject, it } from "vitest";
import { auditLogs, capacityReservations, healthChecks, nodes } from "../../schema/tables/index.ts";
import type { NodeDetailJson, NodeJson } from "../../worker/src/nodes/admin-wire.ts";
import { liveNodesKey } from "../../worker/src/nodes/live.ts";
import { sweepStaleNodes } from "../../worker/src/nodes/health.ts";
import { circuitKey } from "../../worker/src/routing/breaker.ts";
import { admin, expectStatus, sandbox, type ErrorBody, type List } from "./admin-helpers.ts";
import { beat, chat, chatBecomes, freshId as freshName, sendHeartbeat } from "./fleet-helpers.ts";
import { eventually, flushNow, query, redis } from "./helpers.ts";

const DEAD_URL = "http://127.0.0.1:9";
const created: string[] = [];

/** A fresh node id, removed after the test. */
function freshId(prefix: string): string {
  const id = freshName(prefix);
  created.push(id);
  return id;
}

afterEach(async () => {
  for (const id of created.splice(0)) await admin("DELETE", `/nodes/${id}`);
});

async function listed(id: string): Promise<NodeJson> {
  const list = expectStatus(await admin<List<NodeJson>>("GET", "/nodes"), 200);
  const node = list.data.find((n) => n.id === id);
  if (!node) throw new Error(`node ${id} not listed`);
  return node;
}

async function checksOf(nodeId: string): Promise<{ status: string; previousStatus: string | null; detail: Record<string, unknown> }[]> {
  const rows = await query((db) => db.select().from(healthChecks).where(eq(healthChecks.nodeId, nodeId)));
  return rows.sort((a, b) => a.at.getTime() - b.at.getTime()).map((r) => ({ status: r.status, previousStatus: r.previousStatus, detail: r.detail }));
}

/** Waits until the node has `count` health checks (they are written in waitUntil). */
function checksCount(nodeId: string, count: number) {
  return eventually(async () => {
    const rows = await checksOf(nodeId);
    return rows.length >= count ? rows : undefined;
  });
}

describe("/admin/nodes", () => {
  it("lists nodes with their live load, staleness and circuit, and shows one with its health history", async () => {
    const id = freshId("fleet-list");
    const region = freshName("fleet-r");
    await sendHeartbeat(beat(id, { region, url: DEAD_URL, models: ["fleet-model"] }, { inFlight: 2, queued: 1, running: 2, waiting: 3, kvCacheUsage: 0.42, recentTtftMs: 120 }));
    await eventually(() => query(async (db) => (await db.select().from(nodes).where(eq(nodes.id, id)))[0]));

    const node = await listed(id);
    expect(node).toMatchObject({
      object: "node",
      id,
      region_id: region,
      url: DEAD_URL,
      models: ["fleet-model"],
      status: "active",
      reported_status: "ready",
      stale: false,
      heartbeat_interval_ms: 60_000,
      in_flight: 3,
      capacity: 8,
      waiting: 3,
      kv_cache_usage: 0.42,
      running: 2,
      recent_ttft_ms: 120,
      engines: [expect.objectContaining({ in_flight: 3, running: 2, waiting: 3, kv_cache_usage: 0.42, recent_ttft_ms: 120, healthy: true })],
      circuit: "closed",
      circuit_failures: 0,
      circuit_open_until: null,
      healthy: true,
    });
    expect(node.heartbeat_age_ms).toBeGreaterThanOrEqual(0);
    expect(node.heartbeat_age_ms).toBeLessThan(10_000);
    // The seeded static node (never sent a heartbeat) is routed without liveness checks.
    expect(await listed(inject("liveNodeId"))).toMatchObject({ last_heartbeat_at: null, stale: false, healthy: true, in_flight: null, reported_status: null });

    // The worker's circuit breaker state, as routing writes it.
    const openUntil = Date.now() + 60_000;
    await redis().hset(circuitKey(env.REDIS_PREFIX), { [id]: { failures: 5, openUntil } });
    expect(await listed(id)).toMatchObject({ circuit: "open", circuit_failures: 5, circuit_open_until: new Date(openUntil).toISOString() });
    await redis().hset(circuitKey(env.REDIS_PREFIX), { [id]: { failures: 5, openUntil: Date.now() - 1 } });
    expect((await listed(id)).circuit).toBe("half_open");

    // A status change is recorded with the load it came with; an unchanged status is not.
    await sendHeartbeat(beat(id, { region, url: DEAD_URL, models: ["fleet-model"], status: "degraded" }, { waiting: 9, kvCacheUsage: 0.97 }));
    await sendHeartbeat(beat(id, { region, url: DEAD_URL, models: ["fleet-model"], status: "degraded" }, { waiting: 9, kvCacheUsage: 0.97 }));
    const checks = await checksCount(id, 2);
    expect(checks.map((c) => [c.status, c.previousStatus])).toEqual([
      ["ready", null],
      ["degraded", "ready"],
    ]);
    expect(checks[1]?.detail).toMatchObject({ waiting: 9, kvCacheUsage: 0.97, capacity: 8 });

    const shown = expectStatus(await admin<NodeDetailJson>("GET", `/nodes/${id}`), 200);
    expect(shown).toMatchObject({ id, reported_status: "degraded", healthy: true, waiting: 9 });
    expect(shown.health_checks.map((h) => h.status)).toEqual(["degraded", "ready"]);
    expect(shown.health_checks[0]).toMatchObject({ object: "health_check", node_id: id, previous_status: "ready" });
  });

  it("records a node going stale (sweep) and coming back (heartbeat) in its health history", async () => {
    const id = freshId("fleet-stale");
    const fields = { region: freshName("fleet-r"), url: DEAD_URL, models: ["fleet-model"], intervalMs: 100 };
    await sendHeartbeat(beat(id, fields));
    await checksCount(id, 1);
    await new Promise((r) => setTimeout(r, 400)); // three missed 100 ms beats
    expect(await listed(id)).toMatchObject({ stale: true, healthy: false });

    // The every-minute scheduled job sweeps; a second sweep adds nothing.
    await flushNow();
    await query((db) => sweepStaleNodes({ db, redis: redis(), prefix: env.REDIS_PREFIX }));
    expect((await checksOf(id)).map((c) => [c.status, c.previousStatus])).toEqual([
      ["ready", null],
      ["stale", "ready"],
    ]);

    await sendHeartbeat(beat(id, { ...fields, intervalMs: 60_000 }));
    const checks = await checksCount(id, 3);
    expect(checks.map((c) => [c.status, c.previousStatus])).toEqual([
      ["ready", null],
      ["stale", "ready"],
      ["ready", "stale"],
    ]);
  });

  it("drains a node so it gets no new requests, and undrains it so traffic returns", async () => {
    // The test backplane serving hb-model; nodes.test.ts registers it too, so it is removed at the end.
    const hb = inject("hbNode");
    const fields = { region: "hb-region", url: hb.url, models: ["hb-model"] };
    try {
      await sendHeartbeat(beat(hb.id, fields));
      await chatBecomes("hb-model", (r) => r.status === 200 && r.node === hb.id);

      const drained = expectStatus(await admin<NodeJson>("POST", `/nodes/${hb.id}/drain`), 200);
      expect(drained).toMatchObject({ id: hb.id, status: "draining", reported_status: "ready", healthy: false });
      // It was the only node serving hb-model: no capacity, while the backplane itself still says ready.
      const refused = await chatBecomes("hb-model", (r) => r.status !== 200);
      expect(refused).toMatchObject({ status: 503, code: "no_capacity" });
      await sendHeartbeat(beat(hb.id, fields));
      expect(await chat("hb-model")).toMatchObject({ status: 503, code: "no_capacity" });
      // Draining twice changes nothing.
      expect(expectStatus(await admin<NodeJson>("POST", `/nodes/${hb.id}/drain`), 200).status).toBe("draining");

      const undrained = expectStatus(await admin<NodeJson>("POST", `/nodes/${hb.id}/undrain`), 200);
      expect(undrained).toMatchObject({ status: "active", healthy: true });
      const served = await chatBecomes("hb-model", (r) => r.status === 200);
      expect(served.node).toBe(hb.id);

      const audit = await query((db) => db.select().from(auditLogs).where(and(eq(auditLogs.targetType, "node"), eq(auditLogs.targetId, hb.id))));
      const actions = audit.filter((a) => a.actor === "admin-token").map((a) => a.action);
      expect(actions.filter((a) => a === "node.drain")).toHaveLength(1);
      expect(actions).toContain("node.undrain");
    } finally {
      await admin("DELETE", `/nodes/${hb.id}`);
    }
  });

  it("removes a node with its live and circuit state; a backplane still running registers again", async () => {
    const id = freshId("fleet-rm");
    const other = freshId("fleet-keep");
    const fields = { region: freshName("fleet-r"), url: DEAD_URL, models: ["fleet-model"] };
    await sendHeartbeat(beat(id, fields));
    await sendHeartbeat(beat(other, fields));
    await eventually(() => query(async (db) => ((await db.select().from(nodes).where(eq(nodes.id, other))).length > 0 ? true : undefined)));
    await redis().hset(circuitKey(env.REDIS_PREFIX), { [id]: { failures: 1, openUntil: 0 } });
    const reservation = expectStatus(
      await admin<{ id: string }>("POST", "/reservations", { tenant_id: inject("tenantId"), model: "sim-llama-8b", tokens_per_second: 100, node_ids: [id, other] }),
      201,
    );

    const removed = expectStatus(await admin<{ deleted: boolean; note: string }>("DELETE", `/nodes/${id}`), 200);
    expect(removed).toMatchObject({ object: "node", id, deleted: true });
    expect(removed.note).toContain("stop it first");
    expect(await query((db) => db.select().from(nodes).where(eq(nodes.id, id)))).toEqual([]);
    expect(await redis().hget(liveNodesKey(env.REDIS_PREFIX), id)).toBeNull();
    expect(await redis().hget(circuitKey(env.REDIS_PREFIX), id)).toBeNull();
    const [kept] = await query((db) => db.select().from(capacityReservations).where(eq(capacityReservations.id, reservation.id)));
    expect(kept?.nodeIds).toEqual([other]);
    expect((await admin<ErrorBody>("GET", `/nodes/${id}`)).status).toBe(404);
    const audit = await query((db) => db.select().from(auditLogs).where(and(eq(auditLogs.action, "node.remove"), eq(auditLogs.targetId, id))));
    expect(audit).toHaveLength(1);

    // Not stopped: its next heartbeat registers it again.
    await sendHeartbeat(beat(id, fields));
    const back = await eventually(() => query(async (db) => (await db.select().from(nodes).where(eq(nodes.id, id)))[0]));
    expect(back.status).toBe("active");
    await admin("DELETE", `/reservations/${reservation.id}`);
  });

  it("answers 404 for unknown nodes and 403 to tenant admin keys", async () => {
    for (const [method, path] of [
      ["GET", "/nodes/no-such-node"],
      ["POST", "/nodes/no-such-node/drain"],
      ["POST", "/nodes/no-such-node/undrain"],
      ["DELETE", "/nodes/no-such-node"],
    ] as const) {
      const res = await admin<ErrorBody>(method, path);
      expect({ method, path, status: res.status, code: res.body.error.code }).toEqual({ method, path, status: 404, code: "not_found" });
    }
    const s = await sandbox();
    for (const [method, path] of [
      ["GET", "/nodes"],
      ["GET", `/nodes/${inject("liveNodeId")}`],
      ["POST", `/nodes/${inject("liveNodeId")}/drain`],
      ["DELETE", `/nodes/${inject("liveNodeId")}`],
      ["GET", "/regions"],
      ["PUT", "/regions/local"],
      ["GET", "/reservations"],
      ["POST", "/reservations"],
    ] as const) {
      const res = await admin<ErrorBody>(method, path, method === "PUT" ? { name: "Hijacked" } : undefined, s.adminKey);
      expect({ method, path, status: res.status, code: res.body.error.code }).toEqual({ method, path, status: 403, code: "permission_denied" });
    }
    expect((await listed(inject("liveNodeId"))).status).toBe("active");
    expect((await admin("GET", "/nodes", undefined, null)).status).toBe(401);
  });
});
