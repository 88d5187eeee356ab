import { env } from "cloudflare:test";
import { and, eq, sql } from "drizzle-orm";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { auditLogs } from "../../schema/tables/index.ts";
import { adapterChoiceKey } from "../../worker/src/routing/adapters.ts";
import { admin, expectStatus, sandbox, type ErrorBody } from "./admin-helpers.ts";
import { beat, chat, chatBecomes, sendHeartbeat } from "./fleet-helpers.ts";
import { eventually, flushNow, gateway, query, redis } from "./helpers.ts";

// LoRA adapters at the gateway: the catalogue, /v1/models, routing to the nodes that have an
// adapter, loading one on demand, and the admin routes that load and unload them on a node.

const REGION = "lora-region";
const BASE = "lora-base";
const [A, B] = inject("loraNodes");

/** Catalogue models this file made: deactivated at the end, so other files see the catalogue they expect. */
const catalogued = new Set<string>([BASE, "lora-static"]);

/** A fresh catalogue id. */
function fresh(prefix: string): string {
  const id = `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
  catalogued.add(id);
  return id;
}

/** Heartbeats of node `n` (one of the LoRA test nodes) serving the base and `adapters`, with `busy` load or none. */
async function register(n: typeof A, adapters: string[], busy: boolean): Promise<void> {
  if (!n) throw new Error("the services did not start the LoRA nodes");
  const load = busy ? { inFlight: 6, running: 6, waiting: 8, kvCacheUsage: 0.9 } : { inFlight: 0, running: 0, waiting: 0, kvCacheUsage: 0 };
  await sendHeartbeat(beat(n.id, { region: REGION, url: n.url, models: [BASE, ...adapters] }, { ...load, adapters: adapters.map((name) => ({ name, base: BASE })) }));
  // The registry row is written in waitUntil.
  await eventually(async () => ((await admin("GET", `/nodes/${n.id}`)).status === 200 ? true : undefined));
}

async function engineModels(n: typeof A): Promise<{ id: string; parent: string | null }[]> {
  const res = await fetch(`${n?.engineUrl ?? ""}/v1/models`);
  return (await res.json<{ data: { id: string; parent: string | null }[] }>()).data;
}

async function adapterLoads(adapter: string): Promise<(typeof auditLogs.$inferSelect)[]> {
  await flushNow();
  return query((db) => db.select().from(auditLogs).where(and(eq(auditLogs.action, "node.adapter_load"), sql`${auditLogs.details}->>'adapter' = ${adapter}`)));
}

beforeAll(async () => {
  expectStatus(await admin("PUT", `/models/${BASE}`, { context_length: 4096, input_price_per_m_tokens: 1, output_price_per_m_tokens: 2, cached_input_price_per_m_tokens: 0.5 }), 201);
});

afterAll(async () => {
  for (const id of catalogued) await admin("DELETE", `/models/${id}`);
});

afterEach(async () => {
  for (const n of [A, B]) if (n) await admin("DELETE", `/nodes/${n.id}`);
});

describe("LoRA adapters in the catalogue", () => {
  it("takes an adapter of a chat model, with its base's prices and context length when it gives none", async () => {
    const id = fresh("cat-lora");
    const created = await admin<Record<string, unknown>>("PUT", `/models/${id}`, { base_model: BASE, adapter_source: "/data/adapters/x" });
    expect(expectStatus(created, 201)).toMatchObject({
      id,
      kind: "chat",
      context_length: 4096,
      input_price_per_m_tokens: 1,
      output_price_per_m_tokens: 2,
      cached_input_price_per_m_tokens: 0.5,
      base_model: BASE,
      adapter_source: "/data/adapters/x",
    });
    const priced = fresh("cat-lora");
    const own = expectStatus(await admin<Record<string, unknown>>("PUT", `/models/${priced}`, { base_model: BASE, input_price_per_m_tokens: 3 }), 201);
    expect(own).toMatchObject({ input_price_per_m_tokens: 3, output_price_per_m_tokens: 2, adapter_source: null });
    // Updating keeps what is left out, and null clears the source.
    const updated = expectStatus(await admin<Record<string, unknown>>("PUT", `/models/${id}`, { adapter_source: null, output_price_per_m_tokens: 4 }), 200);
    expect(updated).toMatchObject({ base_model: BASE, adapter_source: null, output_price_per_m_tokens: 4, input_price_per_m_tokens: 1 });
  });

  it("refuses a base that is missing, not a chat model or itself an adapter, and a source without a base, naming the field", async () => {
    const adapter = fresh("cat-lora");
    expectStatus(await admin("PUT", `/models/${adapter}`, { base_model: BASE }), 201);
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ base_model: "no-such-model" }, "base_model", /not in the catalogue/],
      [{ base_model: "sim-embed" }, "base_model", /embedding model/],
      [{ base_model: adapter }, "base_model", /itself an adapter/],
      [{ context_length: 1024, adapter_source: "/data/x" }, "adapter_source", /only a LoRA adapter/],
      [{ base_model: BASE, kind: "embedding" }, "kind", /chat model/],
      [{}, "context_length", /required/],
    ];
    for (const [body, param, message] of cases) {
      const res = await admin<ErrorBody>("PUT", `/models/${fresh("cat-bad")}`, body);
      expect({ status: res.status, param: res.body.error.param }).toEqual({ status: 400, param });
      expect(res.body.error.message).toMatch(message);
    }
    const baseBecomesAdapter = await admin<ErrorBody>("PUT", `/models/${BASE}`, { base_model: "sim-llama-8b" });
    expect(baseBecomesAdapter.status).toBe(400);
    expect(baseBecomesAdapter.body.error.message).toContain(adapter);
  });

  it("lists adapters in /v1/models with parent set to their base, loadable ones as available", async () => {
    const adapter = fresh("list-lora");
    expectStatus(await admin("PUT", `/models/${adapter}`, { base_model: BASE, adapter_source: "/data/adapters/l" }), 201);
    await register(B, [], false);
    const entry = await eventually(async () => {
      const res = await gateway("/v1/models");
      const data = (await res.json<{ data: { id: string; parent: string | null; available: boolean; owned_by: string }[] }>()).data;
      const found = data.find((m) => m.id === adapter);
      return found?.available === true ? { found, base: data.find((m) => m.id === BASE) } : undefined;
    });
    expect(entry.found).toMatchObject({ id: adapter, parent: BASE, owned_by: "switchyard", available: true });
    expect(entry.base?.parent).toBeNull();
  });
});

describe("routing LoRA adapters", () => {
  it("sends an adapter only to the nodes whose live state lists it", async () => {
    expectStatus(await admin("PUT", "/models/lora-static", { base_model: BASE }), 201);
    await register(A, ["lora-static"], true);
    await register(B, [], false);
    const first = await chatBecomes("lora-static", (r) => r.status === 200);
    expect(first.node).toBe(A?.id);
    for (let i = 0; i < 6; i++) expect((await chat("lora-static")).node).toBe(A?.id);
    // The base goes to the idle node.
    expect((await chatBecomes(BASE, (r) => r.status === 200)).node).toBe(B?.id);
  });

  it("loads an adapter no node has on the least-loaded node serving its base, remembers the choice, and loads it once", async () => {
    const adapter = fresh("rt-lora");
    expectStatus(await admin("PUT", `/models/${adapter}`, { base_model: BASE, adapter_source: `/data/adapters/${adapter}` }), 201);
    await register(A, [], true);
    await register(B, [], false);
    await chatBecomes(BASE, (r) => r.node === B?.id);

    const res = await gateway("/v1/chat/completions", { method: "POST", body: JSON.stringify({ model: adapter, messages: [{ role: "user", content: "hi" }], max_tokens: 2 }) });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-switchyard-node")).toBe(B?.id);
    expect((await res.json<{ model: string }>()).model).toBe(adapter);
    expect(await redis().get(adapterChoiceKey(env.REDIS_PREFIX, adapter))).toBe(B?.id);
    expect(await redis().ttl(adapterChoiceKey(env.REDIS_PREFIX, adapter))).toBeGreaterThan(50);
    expect((await engineModels(B)).filter((m) => m.id === adapter).map((m) => ({ id: m.id, parent: m.parent }))).toEqual([{ id: adapter, parent: BASE }]);

    // Now A is the idle one, and neither heartbeat lists the adapter yet: the remembered node serves it.
    await register(A, [], false);
    await register(B, [], true);
    await chatBecomes(BASE, (r) => r.node === A?.id);
    for (let i = 0; i < 3; i++) expect((await chat(adapter)).node).toBe(B?.id);
    expect((await engineModels(A)).map((m) => m.id)).not.toContain(adapter);
    const loads = await adapterLoads(adapter);
    expect(loads.map((l) => ({ actor: l.actor, target: l.targetId, status: l.details.trigger }))).toEqual([{ actor: "gateway", target: B?.id, status: "request" }]);
  });

  it("answers 503 naming the model when an adapter no node has cannot be loaded on demand", async () => {
    const adapter = fresh("nosrc-lora");
    expectStatus(await admin("PUT", `/models/${adapter}`, { base_model: BASE }), 201);
    await register(B, [], false);
    const answer = await chatBecomes(adapter, (r) => r.code !== "model_not_found");
    expect(answer).toMatchObject({ status: 503, code: "no_capacity" });
    expect((await engineModels(B)).map((m) => m.id)).not.toContain(adapter);
  });
});

describe("/admin/nodes/:id/adapters", () => {
  it("lists, loads (source from the catalogue) and unloads adapters on a node, auditing each change", async () => {
    const adapter = fresh("adm-lora");
    expectStatus(await admin("PUT", `/models/${adapter}`, { base_model: BASE, adapter_source: `/data/adapters/${adapter}` }), 201);
    await register(A, ["lora-static"], false);
    const id = A?.id ?? "";

    const listed = expectStatus(await admin<{ data: { name: string; base: string; engine: string }[] }>("GET", `/nodes/${id}/adapters`), 200);
    expect(listed.data).toContainEqual(expect.objectContaining({ name: "lora-static", base: BASE, engine: "sim-0" }));

    const loaded = expectStatus(await admin<Record<string, unknown>>("POST", `/nodes/${id}/adapters`, { name: adapter }), 200);
    expect(loaded).toMatchObject({ object: "lora_adapter", name: adapter, base: BASE, source: `/data/adapters/${adapter}`, engine: "sim-0", status: "loaded", node_id: id });
    expect((await engineModels(A)).map((m) => m.id)).toContain(adapter);
    const after = expectStatus(await admin<{ data: { name: string }[] }>("GET", `/nodes/${id}/adapters`), 200);
    expect(after.data.map((a) => a.name)).toContain(adapter);

    const unloaded = expectStatus(await admin<Record<string, unknown>>("DELETE", `/nodes/${id}/adapters/${adapter}`), 200);
    expect(unloaded).toMatchObject({ name: adapter, status: "unloaded", engines: ["sim-0"], node_id: id });
    expect((await engineModels(A)).map((m) => m.id)).not.toContain(adapter);
    const again = await admin<ErrorBody>("DELETE", `/nodes/${id}/adapters/${adapter}`);
    expect({ status: again.status, code: again.body.error.code }).toEqual({ status: 404, code: "not_found" });

    const rows = await query((db) => db.select().from(auditLogs).where(and(eq(auditLogs.targetId, id), sql`${auditLogs.details}->>'adapter' = ${adapter}`)));
    expect(rows.map((r) => r.action).sort()).toEqual(["node.adapter_load", "node.adapter_unload"]);
    expect(rows.find((r) => r.action === "node.adapter_load")?.details).toMatchObject({ base: BASE, source: `/data/adapters/${adapter}`, engine: "sim-0", status: "loaded" });
  });

  it("refuses a name that is not a catalogue adapter, an adapter with no source, unknown nodes and tenant keys", async () => {
    await register(A, [], false);
    const id = A?.id ?? "";
    const notAdapter = await admin<ErrorBody>("POST", `/nodes/${id}/adapters`, { name: BASE });
    expect({ status: notAdapter.status, param: notAdapter.body.error.param }).toEqual({ status: 400, param: "name" });
    const noSource = fresh("nosrc-lora");
    expectStatus(await admin("PUT", `/models/${noSource}`, { base_model: BASE }), 201);
    const missing = await admin<ErrorBody>("POST", `/nodes/${id}/adapters`, { name: noSource });
    expect({ status: missing.status, param: missing.body.error.param }).toEqual({ status: 400, param: "source" });
    expect((await admin("GET", "/nodes/no-such-node/adapters")).status).toBe(404);
    const tenant = await sandbox();
    const refused = await admin<ErrorBody>("GET", `/nodes/${id}/adapters`, undefined, tenant.adminKey);
    expect({ status: refused.status, code: refused.body.error.code }).toEqual({ status: 403, code: "permission_denied" });
  });
});
