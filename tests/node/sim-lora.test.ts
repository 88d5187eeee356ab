import { describe, expect, it } from "vitest";
import { parseSimArgs, simOptions } from "../../backplane/src/sim/index.ts";
import { simClient, simPost, useSimEngine } from "../support/sim-harness.ts";

// LoRA adapters in the simulated vLLM: --lora, /v1/models cards, generation, runtime load/unload.

const start = useSimEngine();

interface Card {
  id: string;
  object: string;
  created: number;
  owned_by: string;
  root: string;
  parent: string | null;
  max_model_len: number | null;
  permission: Record<string, unknown>[];
}

async function cards(url: string): Promise<Card[]> {
  return ((await (await fetch(`${url}/v1/models`)).json()) as { data: Card[] }).data;
}

describe("simulated vLLM: LoRA adapters", () => {
  it("parses --lora name=base (repeatable) and --runtime-lora, or VLLM_ALLOW_RUNTIME_LORA_UPDATING as vLLM reads it", () => {
    const options = parseSimArgs(["--lora", "sql=sim-llama-8b", "--lora=chat-v2=sim-llama-8b", "--runtime-lora"], {});
    expect(options.loras).toEqual([
      { name: "sql", base: "sim-llama-8b", path: "/adapters/sql" },
      { name: "chat-v2", base: "sim-llama-8b", path: "/adapters/chat-v2" },
    ]);
    expect(options.runtimeLora).toBe(true);
    expect(parseSimArgs([], {}).runtimeLora).toBe(false);
    expect(parseSimArgs([], { VLLM_ALLOW_RUNTIME_LORA_UPDATING: "True" }).runtimeLora).toBe(true);
    expect(parseSimArgs([], { VLLM_ALLOW_RUNTIME_LORA_UPDATING: " 1 " }).runtimeLora).toBe(true);
    expect(parseSimArgs([], { VLLM_ALLOW_RUNTIME_LORA_UPDATING: "yes" }).runtimeLora).toBe(false);
  });

  it("refuses adapters without a served generate base, naming --lora", () => {
    expect(() => parseSimArgs(["--lora", "sql"], {})).toThrow(/--lora: expected <name>=<base model>/);
    expect(() => parseSimArgs(["--lora", "sql=nope"], {})).toThrow(/--lora: adapter 'sql': base 'nope' is not a served model/);
    expect(() => parseSimArgs(["--lora", "sql=sim-embed"], {})).toThrow(/not a generate model/);
    expect(() => parseSimArgs(["--lora", "sim-embed=sim-llama-8b"], {})).toThrow(/name of a served model/);
    expect(() => simOptions({ loras: [{ name: "a", base: "sim-llama-8b", path: "/a" }, { name: "a", base: "sim-llama-8b", path: "/b" }] })).toThrow(/unique/);
  });

  it("lists adapters after the base models with vLLM's card: parent = base, root = its path, max_model_len null", async () => {
    const sim = await start({ loras: [{ name: "sql", base: "sim-llama-8b", path: "/adapters/sql" }] });
    const data = await cards(sim.url);
    expect(data.map((c) => [c.id, c.parent])).toEqual([["sim-llama-8b", null], ["sim-embed", null], ["sql", "sim-llama-8b"]]);
    const sql = data[2];
    expect(Object.keys(sql ?? {})).toEqual(["id", "object", "created", "owned_by", "root", "parent", "max_model_len", "permission"]);
    expect(sql).toMatchObject({ object: "model", owned_by: "vllm", root: "/adapters/sql", parent: "sim-llama-8b", max_model_len: null });
    expect(sql?.permission[0]).toMatchObject({ object: "model_permission", allow_sampling: true, organization: "*" });
  });

  it("generates with an adapter like its base, and the response names the adapter", async () => {
    const sim = await start({ outputTokens: 6, loras: [{ name: "sql", base: "sim-llama-8b", path: "/adapters/sql" }] });
    const client = simClient(sim);
    const messages = [{ role: "user" as const, content: "Count the rows" }];
    const viaAdapter = await client.chat.completions.create({ model: "sql", messages });
    const viaBase = await client.chat.completions.create({ model: "sim-llama-8b", messages });
    expect(viaAdapter.model).toBe("sql");
    expect(viaBase.model).toBe("sim-llama-8b");
    expect(viaAdapter.usage).toEqual(viaBase.usage);
    expect(viaAdapter.choices[0]?.message.content).toBe(viaBase.choices[0]?.message.content);
    const completion = await client.completions.create({ model: "sql", prompt: "SELECT", max_tokens: 3 });
    expect(completion.model).toBe("sql");
    const stream = await client.chat.completions.create({ model: "sql", messages, stream: true });
    const models = new Set<string>();
    for await (const chunk of stream) models.add(chunk.model);
    expect([...models]).toEqual(["sql"]);
    // The engine's metrics count adapter requests under the base model, as vLLM labels them.
    const metrics = await (await fetch(`${sim.url}/metrics`)).text();
    expect(metrics).not.toContain('model_name="sql"');
    expect(metrics).toMatch(/vllm:request_success_total\{[^}]*model_name="sim-llama-8b"[^}]*finished_reason="stop"\} 3\.0/);
    expect(metrics).toMatch(/vllm:request_success_total\{[^}]*model_name="sim-llama-8b"[^}]*finished_reason="length"\} 1\.0/);
  });

  it("has no runtime load or unload routes unless runtime updating is on (FastAPI's 404)", async () => {
    const sim = await start();
    const load = await simPost(sim, "/v1/load_lora_adapter", { lora_name: "sql", lora_path: "/adapters/sql" });
    expect(load.status).toBe(404);
    expect(await load.json()).toEqual({ detail: "Not Found" });
    const unload = await simPost(sim, "/v1/unload_lora_adapter", { lora_name: "sql" });
    expect(unload.status).toBe(404);
  });

  it("loads and unloads adapters at runtime with vLLM's plain-text answers and errors", async () => {
    const sim = await start({ runtimeLora: true });
    const load = await simPost(sim, "/v1/load_lora_adapter", { lora_name: "sql", lora_path: "/data/adapters/sql" });
    expect(load.status).toBe(200);
    expect(load.headers.get("content-type")).toBeNull();
    expect(await load.text()).toBe("Success: LoRA adapter 'sql' added successfully.");
    expect((await cards(sim.url)).find((c) => c.id === "sql")).toMatchObject({ root: "/data/adapters/sql", parent: "sim-llama-8b" });
    const answer = await simClient(sim).chat.completions.create({ model: "sql", messages: [{ role: "user", content: "hi" }], max_tokens: 2 });
    expect(answer.model).toBe("sql");

    const again = await simPost(sim, "/v1/load_lora_adapter", { lora_name: "sql", lora_path: "/data/adapters/sql" });
    expect(again.status).toBe(400);
    expect(await again.json()).toEqual({
      error: {
        message: "The lora adapter 'sql' has already been loaded. If you want to load the adapter in place, set 'load_inplace' to True.",
        type: "InvalidUserInput",
        param: null,
        code: 400,
      },
    });
    const inPlace = await simPost(sim, "/v1/load_lora_adapter", { lora_name: "sql", lora_path: "/data/adapters/sql-v2", load_inplace: true });
    expect(inPlace.status).toBe(200);
    expect((await cards(sim.url)).find((c) => c.id === "sql")?.root).toBe("/data/adapters/sql-v2");

    const empty = await simPost(sim, "/v1/load_lora_adapter", { lora_name: "", lora_path: "/x" });
    expect(empty.status).toBe(400);
    expect(((await empty.json()) as { error: { message: string; type: string } }).error).toMatchObject({
      message: "Both 'lora_name' and 'lora_path' must be provided.",
      type: "InvalidUserInput",
    });
    const missing = await simPost(sim, "/v1/load_lora_adapter", { lora_name: "x" });
    expect(missing.status).toBe(400);
    expect(((await missing.json()) as { error: { message: string; type: string } }).error).toMatchObject({
      message: "[{'type': 'missing', 'loc': ('body', 'lora_path'), 'msg': 'Field required'}]",
      type: "Bad Request",
    });

    const unload = await simPost(sim, "/v1/unload_lora_adapter", { lora_name: "sql" });
    expect(unload.status).toBe(200);
    expect(await unload.text()).toBe("Success: LoRA adapter 'sql' removed successfully.");
    expect((await cards(sim.url)).map((c) => c.id)).toEqual(["sim-llama-8b", "sim-embed"]);
    const gone = await simPost(sim, "/v1/unload_lora_adapter", { lora_name: "sql" });
    expect(gone.status).toBe(404);
    expect(((await gone.json()) as { error: { message: string; type: string } }).error).toMatchObject({ message: "The lora adapter 'sql' cannot be found.", type: "NotFoundError" });
    const unknownModel = await simPost(sim, "/v1/chat/completions", { model: "sql", messages: [{ role: "user", content: "hi" }] });
    expect(unknownModel.status).toBe(404);
    expect(((await unknownModel.json()) as { error: { message: string } }).error.message).toBe("The model `sql` does not exist.");
  });
});
