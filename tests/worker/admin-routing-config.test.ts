import { env } from "cloudflare:test";
import { and, eq } from "drizzle-orm";
import { describe, expect, inject, it } from "vitest";
import { auditLogs } from "../../schema/tables/index.ts";
import type { RegionJson, ReservationJson } from "../../worker/src/nodes/admin-wire.ts";
import type { EnvironmentJson } from "../../worker/src/admin/wire.ts";
import { keyCacheKey, type KeyCacheEntry } from "../../worker/src/auth/identity.ts";
import { hashApiKey } from "../../worker/src/auth/keys.ts";
import { routingCacheKey, type RoutingSnapshot } from "../../worker/src/routing/snapshot.ts";
import { admin, expectStatus, sandbox, type ErrorBody, type KeyJson, type List } from "./admin-helpers.ts";
import { beat, freshId, sendHeartbeat } from "./fleet-helpers.ts";
import { eventually, gateway, query, redis } from "./helpers.ts";

/** Makes the gateway cache the routing snapshot in Redis, and returns it. */
async function cachedSnapshot(): Promise<RoutingSnapshot> {
  await new Promise((r) => setTimeout(r, 1_100)); // ROUTING_CACHE_ISOLATE_SECONDS=1 in the test bindings
  return eventually(async () => {
    await (await gateway("/v1/models")).arrayBuffer();
    return (await redis().get<RoutingSnapshot>(routingCacheKey(env.REDIS_PREFIX))) ?? undefined;
  });
}

async function region(id: string): Promise<RegionJson | undefined> {
  return expectStatus(await admin<List<RegionJson>>("GET", "/regions"), 200).data.find((r) => r.id === id);
}

describe("/admin/regions", () => {
  it("creates and updates a region, counts its healthy nodes, and drops the routing snapshot", async () => {
    const id = freshId("region");
    await cachedSnapshot();
    const created = await admin<RegionJson>("PUT", `/regions/${id}`, { name: "Frankfurt", latitude: 50.11, longitude: 8.68, price_multiplier: 1.25 });
    expect(created.status).toBe(201);
    expect(created.body).toEqual({ object: "region", id, name: "Frankfurt", latitude: 50.11, longitude: 8.68, price_multiplier: 1.25, active: true, nodes_total: 0, nodes_healthy: 0 });
    expect(await redis().get(routingCacheKey(env.REDIS_PREFIX))).toBeNull();
    expect((await cachedSnapshot()).regions?.[id]).toEqual({ latitude: 50.11, longitude: 8.68, multiplier: 1.25 });

    const nodeId = freshId("region-node");
    await sendHeartbeat(beat(nodeId, { region: id, url: "http://127.0.0.1:9", models: ["fleet-model"] }));
    await eventually(async () => ((await region(id))?.nodes_total === 1 ? true : undefined));
    expect(await region(id)).toMatchObject({ nodes_total: 1, nodes_healthy: 1 });
    expectStatus(await admin("POST", `/nodes/${nodeId}/drain`), 200);
    expect(await region(id)).toMatchObject({ nodes_total: 1, nodes_healthy: 0 });

    // Fields left out keep their values.
    const updated = expectStatus(await admin<RegionJson>("PUT", `/regions/${id}`, { price_multiplier: 2 }), 200);
    expect(updated).toMatchObject({ name: "Frankfurt", latitude: 50.11, longitude: 8.68, price_multiplier: 2, nodes_total: 1, nodes_healthy: 0 });
    const audit = await query((db) => db.select().from(auditLogs).where(and(eq(auditLogs.targetType, "region"), eq(auditLogs.targetId, id))));
    expect(audit.map((a) => a.action).sort()).toEqual(["region.create", "region.update"]);
    expectStatus(await admin("DELETE", `/nodes/${nodeId}`), 200);
  });

  it("refuses out-of-range values naming the field", async () => {
    const id = freshId("region-bad");
    const cases: [unknown, string][] = [
      [{ latitude: 91, longitude: 0 }, "latitude"],
      [{ latitude: 0, longitude: -181 }, "longitude"],
      [{ longitude: 8.7 }, "latitude"],
      [{ price_multiplier: 0 }, "price_multiplier"],
      [{ name: "" }, "name"],
      [{ colour: "red" }, "colour"],
    ];
    for (const [body, param] of cases) {
      const res = await admin<ErrorBody>("PUT", `/regions/${id}`, body);
      expect({ body, status: res.status, param: res.body.error.param }).toEqual({ body, status: 400, param });
    }
    const badId = await admin<ErrorBody>("PUT", "/regions/Not%20A%20Region", { name: "x" });
    expect(badId.body.error).toMatchObject({ code: "invalid_value", param: "id" });
    expect(await region(id)).toBeUndefined();
  });
});

describe("/admin/reservations", () => {
  it("creates, lists, shows and deletes a reservation, each change audited and in the routing snapshot", async () => {
    const tenantId = inject("tenantId");
    const nodeId = inject("liveNodeId");
    const created = await admin<ReservationJson>("POST", "/reservations", { tenant_id: tenantId, model: "sim-llama-8b", tokens_per_second: 750, node_ids: [nodeId, nodeId] });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ object: "capacity_reservation", tenant_id: tenantId, model: "sim-llama-8b", tokens_per_second: 750, node_ids: [nodeId] });
    const id = created.body.id;
    expect(id).toMatch(/^res_/);
    expect((await cachedSnapshot()).reservations).toContainEqual({ tenantId, model: "sim-llama-8b", tokensPerSecond: 750, nodeIds: [nodeId] });

    const byTenant = expectStatus(await admin<List<ReservationJson>>("GET", `/reservations?tenant_id=${tenantId}&model=sim-llama-8b`), 200);
    expect(byTenant.data.map((r) => r.id)).toContain(id);
    const otherModel = expectStatus(await admin<List<ReservationJson>>("GET", `/reservations?tenant_id=${tenantId}&model=sim-embed`), 200);
    expect(otherModel.data.map((r) => r.id)).not.toContain(id);
    expect(expectStatus(await admin<ReservationJson>("GET", `/reservations/${id}`), 200)).toEqual(created.body);

    expect(expectStatus(await admin("DELETE", `/reservations/${id}`), 200)).toEqual({ object: "capacity_reservation", id, deleted: true });
    expect((await admin("GET", `/reservations/${id}`)).status).toBe(404);
    expect((await admin("DELETE", `/reservations/${id}`)).status).toBe(404);
    expect((await cachedSnapshot()).reservations?.some((r) => r.tokensPerSecond === 750 && r.tenantId === tenantId)).toBe(false);
    const audit = await query((db) => db.select().from(auditLogs).where(eq(auditLogs.targetId, id)));
    expect(audit.map((a) => a.action).sort()).toEqual(["reservation.create", "reservation.delete"]);
  });

  it("refuses unknown tenants, models and nodes, and a rate that is not positive, naming the field", async () => {
    const valid = { tenant_id: inject("tenantId"), model: "sim-llama-8b", tokens_per_second: 10, node_ids: [inject("liveNodeId")] };
    const cases: [Record<string, unknown>, string][] = [
      [{ tenant_id: "ten_missing" }, "tenant_id"],
      [{ model: "no-such-model" }, "model"],
      [{ tokens_per_second: 0 }, "tokens_per_second"],
      [{ tokens_per_second: 1.5 }, "tokens_per_second"],
      [{ node_ids: [] }, "node_ids"],
      [{ node_ids: [inject("liveNodeId"), "no-such-node"] }, "node_ids"],
    ];
    for (const [change, param] of cases) {
      const res = await admin<ErrorBody>("POST", "/reservations", { ...valid, ...change });
      expect({ change, status: res.status, code: res.body.error.code, param: res.body.error.param }).toEqual({ change, status: 400, code: "invalid_value", param });
    }
    const missing = await admin<ErrorBody>("POST", "/reservations", { ...valid, node_ids: ["no-such-node"] });
    expect(missing.body.error.message).toContain("no-such-node");
  });
});

describe("routing strategy and region overrides", () => {
  it("round-trips an environment's strategy and region overrides and carries them into its keys' identity", async () => {
    const s = await sandbox();
    const env1 = await admin<EnvironmentJson>("POST", "/environments", { tenant_id: s.tenantId, name: "routed", routing_strategy: "round-robin", region_overrides: ["local", "local"] });
    expect(env1.status).toBe(201);
    expect(env1.body).toMatchObject({ routing_strategy: "round-robin", region_overrides: ["local"], pinned_region: null });
    const key = expectStatus(await admin<KeyJson>("POST", "/keys", { environment_id: env1.body.id, name: "app" }), 201).key ?? "";
    const cacheKey = keyCacheKey(env.REDIS_PREFIX, await hashApiKey(key));
    const identity = async () => {
      await (await gateway("/v1/models", { key })).arrayBuffer();
      // Redis holds the identity with when it was read from Postgres (platform/hot-state.ts).
      const cached = await eventually(async () => (await redis().get<{ entry: KeyCacheEntry }>(cacheKey)) ?? undefined);
      return cached.entry.found ? cached.entry.identity : null;
    };
    expect(await identity()).toMatchObject({ routingStrategy: "round-robin", regionOverrides: ["local"] });

    // A tenant admin key manages its own environments' routing too.
    const patched = expectStatus(await admin<EnvironmentJson>("PATCH", `/environments/${env1.body.id}`, { routing_strategy: "latency", region_overrides: null }, s.adminKey), 200);
    expect(patched).toMatchObject({ routing_strategy: "latency", region_overrides: null });
    expect(await redis().get(cacheKey)).toBeNull();
    await new Promise((r) => setTimeout(r, 1_100)); // KEY_CACHE_ISOLATE_SECONDS=1 in the test bindings
    expect(await identity()).toMatchObject({ routingStrategy: "latency", regionOverrides: null });
    expect(expectStatus(await admin<EnvironmentJson>("GET", `/environments/${env1.body.id}`), 200)).toMatchObject({ routing_strategy: "latency", region_overrides: null });

    // "*" allows any region.
    const any = expectStatus(await admin<EnvironmentJson>("PATCH", `/environments/${env1.body.id}`, { region_overrides: ["*"] }), 200);
    expect(any.region_overrides).toEqual(["*"]);
    const badStrategy = await admin<ErrorBody>("PATCH", `/environments/${env1.body.id}`, { routing_strategy: "fastest" });
    expect(badStrategy.body.error).toMatchObject({ code: "invalid_value", param: "routing_strategy" });
    const badRegion = await admin<ErrorBody>("PATCH", `/environments/${env1.body.id}`, { region_overrides: ["local", "mars-1"] });
    expect(badRegion.body.error).toMatchObject({ code: "invalid_value", param: "region_overrides" });
    expect(badRegion.body.error.message).toContain("mars-1");
  });

  it("round-trips a model's strategy into the routing snapshot", async () => {
    const id = freshId("strategy-model");
    const created = await admin<{ routing_strategy: string | null }>("PUT", `/models/${id}`, { context_length: 4096, routing_strategy: "prefix-affinity" });
    expect(created.status).toBe(201);
    expect(created.body.routing_strategy).toBe("prefix-affinity");
    expect((await cachedSnapshot()).models[id]?.routingStrategy).toBe("prefix-affinity");

    // Left out: unchanged; null: back to the default.
    expect(expectStatus(await admin<{ routing_strategy: string | null }>("PUT", `/models/${id}`, { context_length: 8192 }), 200).routing_strategy).toBe("prefix-affinity");
    expect(expectStatus(await admin<{ routing_strategy: string | null }>("PUT", `/models/${id}`, { context_length: 8192, routing_strategy: null }), 200).routing_strategy).toBeNull();
    expect((await cachedSnapshot()).models[id]?.routingStrategy).toBeNull();
    const bad = await admin<ErrorBody>("PUT", `/models/${id}`, { context_length: 8192, routing_strategy: "fastest" });
    expect(bad.body.error).toMatchObject({ code: "invalid_value", param: "routing_strategy" });
    await admin("DELETE", `/models/${id}`);
  });
});
