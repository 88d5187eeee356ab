import { describe, expect, it } from "vitest";
import { loraAdaptersFromList, modelIdsFromList } from "../../backplane/src/engines/http.ts";
import { engineReportSchema, heartbeatSchema } from "../../schema/contracts/heartbeat.ts";
import { NODE_HEADER, importSigningKey, signRequest } from "../../schema/contracts/signing.ts";
import { startRecordingGateway } from "../support/recording-gateway.ts";
import { TEST_NODE, TEST_SECRET, signedPost, useBackplane, waitUntil } from "../support/backplane-harness.ts";

// LoRA adapters at the backplane: reported apart from models, in heartbeats, and loaded or
// unloaded at runtime through the signed /management/adapters routes.

const kit = useBackplane();

/** vLLM's /v1/models with one adapter (api-surfaces.md §4.1). */
const VLLM_MODELS = {
  object: "list",
  data: [
    { id: "BASE", object: "model", created: 1760000000, owned_by: "vllm", root: "/models/BASE", parent: null, max_model_len: 32768, permission: [] },
    { id: "sql", object: "model", created: 1760000000, owned_by: "vllm", root: "/adapters/sql", parent: "BASE", max_model_len: null, permission: [] },
  ],
};

async function signed(baseUrl: string, method: string, path: string, body = ""): Promise<Response> {
  const headers = await signRequest(await importSigningKey(TEST_SECRET), method, path, body);
  return fetch(baseUrl + path, { method, headers: { [NODE_HEADER]: TEST_NODE, "content-type": "application/json", ...headers }, body: body === "" ? undefined : body });
}

const chat = (model: string) => ({ model, messages: [{ role: "user", content: "hi" }], max_tokens: 2 });
const errorOf = async (res: Response) => ((await res.json()) as { error: { code: string; message: string } }).error;

describe("LoRA adapters at the backplane", () => {
  it("reads adapters (name → base, path) from vLLM's /v1/models and keeps their ids among the models", () => {
    expect(modelIdsFromList(VLLM_MODELS)).toEqual(["BASE", "sql"]);
    expect(loraAdaptersFromList(VLLM_MODELS)).toEqual([{ name: "sql", base: "BASE", source: "/adapters/sql" }]);
    expect(loraAdaptersFromList({ data: [{ id: "x", parent: null }, { id: "y" }, "junk"] })).toEqual([]);
  });

  it("heartbeats carry each engine's adapters, and an older gateway's schema still takes the heartbeat", async () => {
    const gateway = await startRecordingGateway(TEST_SECRET);
    kit.defer(() => gateway.close());
    const sim = await kit.sim({ loras: [{ name: "sql", base: "sim-llama-8b", path: "/adapters/sql" }] });
    await kit.daemon([{ id: "gpu0", kind: "sim", url: sim.url }], { gatewayUrl: gateway.url, heartbeatIntervalMs: 200 });
    await waitUntil(() => gateway.heartbeats.length >= 1, 5_000, "a heartbeat");
    expect(gateway.rejected).toEqual([]);
    const hb = gateway.heartbeats.at(-1);
    expect(hb?.models).toEqual(["sim-embed", "sim-llama-8b", "sql"]);
    expect(hb?.engines[0]?.models).toEqual(["sim-llama-8b", "sim-embed", "sql"]);
    expect(hb?.engines[0]?.adapters).toEqual([{ name: "sql", base: "sim-llama-8b" }]);

    // A gateway from before the field: its engine schema had no `adapters`, and drops it.
    const older = heartbeatSchema.extend({ engines: heartbeatSchema.shape.engines.element.omit({ adapters: true }).array() });
    const parsed = older.parse(hb);
    expect(parsed.engines[0]).not.toHaveProperty("adapters");
    // A backplane from before the field sends none, which this gateway takes.
    const { adapters: _dropped, ...engine } = engineReportSchema.parse(hb?.engines[0]);
    expect(heartbeatSchema.safeParse({ ...hb, engines: [engine] }).success).toBe(true);
  });

  it("loads an adapter on the engine serving its base, routable at once and announced by a heartbeat; concurrent loads make one engine call", async () => {
    const gateway = await startRecordingGateway(TEST_SECRET);
    kit.defer(() => gateway.close());
    const sim = await kit.sim({ runtimeLora: true });
    // Probes far apart: the adapter must be servable before the next probe lists it.
    const node = await kit.daemon([{ id: "gpu0", kind: "sim", url: sim.url }], { gatewayUrl: gateway.url, healthIntervalMs: 600_000, heartbeatIntervalMs: 60_000 });
    await waitUntil(() => gateway.heartbeats.length >= 1, 5_000, "the first heartbeat");

    const before = sim.stats.requests;
    const body = JSON.stringify({ name: "sql", source: "/data/adapters/sql", base: "sim-llama-8b" });
    const answers = await Promise.all([1, 2, 3].map(() => signed(node.url, "POST", "/management/adapters", body)));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
    expect(sim.stats.requests - before).toBe(1);
    // The calls that overlapped the load share its answer; one that reached the node after it finished
    // (a busy machine can serialise them, in any order) is told the adapter is already there.
    const bodies = (await Promise.all(answers.map((a) => a.json()))) as { status: string }[];
    expect(bodies.find((b) => b.status === "loaded")).toEqual({ object: "lora_adapter", name: "sql", base: "sim-llama-8b", source: "/data/adapters/sql", engine: "gpu0", status: "loaded", message: "Success: LoRA adapter 'sql' added successfully." });
    for (const b of bodies) expect(["loaded", "already_loaded"]).toContain(b.status);

    const served = await signedPost(node.url, "/v1/chat/completions", chat("sql"));
    expect(served.status).toBe(200);
    expect(((await served.json()) as { model: string }).model).toBe("sql");
    await waitUntil(() => gateway.heartbeats.some((h) => h.engines[0]?.adapters?.some((a) => a.name === "sql") === true), 3_000, "a heartbeat with the adapter");

    const again = await signed(node.url, "POST", "/management/adapters", body);
    expect(((await again.json()) as { status: string }).status).toBe("already_loaded");
    const list = await signed(node.url, "GET", "/management/adapters");
    expect(await list.json()).toEqual({
      object: "list",
      engines: [{ id: "gpu0", kind: "sim", healthy: true, base_models: ["sim-llama-8b", "sim-embed"], adapters: [{ name: "sql", base: "sim-llama-8b", source: "/data/adapters/sql" }] }],
    });

    const unloaded = await signed(node.url, "DELETE", "/management/adapters/sql");
    expect(unloaded.status).toBe(200);
    expect(await unloaded.json()).toEqual({ object: "lora_adapter", name: "sql", status: "unloaded", engines: ["gpu0"] });
    const refused = await signedPost(node.url, "/v1/chat/completions", chat("sql"));
    expect(refused.status).toBe(404);
    expect((await errorOf(refused)).code).toBe("model_not_found");
    const missing = await signed(node.url, "DELETE", "/management/adapters/sql");
    expect(missing.status).toBe(404);
  });

  it("answers 409 naming VLLM_ALLOW_RUNTIME_LORA_UPDATING=True when the engine has no runtime loading", async () => {
    const sim = await kit.sim();
    const node = await kit.daemon([{ id: "gpu0", kind: "sim", url: sim.url }]);
    const res = await signed(node.url, "POST", "/management/adapters", JSON.stringify({ name: "sql", source: "/data/adapters/sql", base: "sim-llama-8b" }));
    expect(res.status).toBe(409);
    const error = await errorOf(res);
    expect(error.code).toBe("conflict");
    expect(error.message).toContain("VLLM_ALLOW_RUNTIME_LORA_UPDATING=True");
    expect(node.pool.models()).not.toContain("sql");
  });

  it("refuses a load it cannot place or read, and unsigned calls", async () => {
    const sim = await kit.sim({ runtimeLora: true });
    const node = await kit.daemon([{ id: "gpu0", kind: "sim", url: sim.url }]);
    const noBase = await signed(node.url, "POST", "/management/adapters", JSON.stringify({ name: "sql", source: "/a", base: "llama-70b" }));
    expect(noBase.status).toBe(409);
    expect((await errorOf(noBase)).message).toContain("serves the base model 'llama-70b'");
    const badBody = await signed(node.url, "POST", "/management/adapters", JSON.stringify({ name: "sql" }));
    expect(badBody.status).toBe(400);
    expect((await errorOf(badBody)).message).toContain("source");
    const isBase = await signed(node.url, "POST", "/management/adapters", JSON.stringify({ name: "sim-llama-8b", source: "/a", base: "sim-llama-8b" }));
    expect(isBase.status).toBe(409);
    const unknownEngine = await signed(node.url, "POST", "/management/adapters", JSON.stringify({ name: "sql", source: "/a", base: "sim-llama-8b", engine: "gpu9" }));
    expect(unknownEngine.status).toBe(404);
    expect((await fetch(`${node.url}/management/adapters`)).status).toBe(401);
  });

  it("reports no adapter routes for engines that cannot load them", async () => {
    const gateway = await startRecordingGateway(TEST_SECRET);
    kit.defer(() => gateway.close());
    const sim = await kit.sim();
    const node = await kit.daemon([{ id: "oa", kind: "openai", url: sim.url }], { gatewayUrl: gateway.url, heartbeatIntervalMs: 200 });
    await waitUntil(() => gateway.heartbeats.length >= 1, 5_000, "a heartbeat");
    expect(gateway.heartbeats[0]?.engines[0]).not.toHaveProperty("adapters");
    const res = await signed(node.url, "POST", "/management/adapters", JSON.stringify({ name: "sql", source: "/a", base: "sim-llama-8b" }));
    expect(res.status).toBe(409);
    expect((await errorOf(res)).message).toContain("only vllm and sim engines");
  });
});
