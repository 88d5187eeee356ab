import { describe, expect, it } from "vitest";
import { inject } from "vitest";
import { parseUsage } from "../../schema/contracts/usage-tap.ts";
import { readJson } from "../../worker/src/proxy/json-tap.ts";
import { gateway, post } from "./helpers.ts";

async function errorOf(res: Response) {
  return { status: res.status, body: await res.json<{ error: { code: string; param: string | null; message: string } }>() };
}

describe("vLLM's extra routes at the edge", () => {
  it("check rerank, score, tokenize and detokenize bodies and name the field", async () => {
    const cases: [string, unknown, string][] = [
      ["/v1/rerank", { model: "sim-embed", documents: ["a"] }, "query"],
      ["/rerank", { model: "sim-embed", query: "q", documents: [] }, "documents"],
      ["/v2/rerank", { model: "sim-embed", query: "q", documents: ["a"], top_n: -1 }, "top_n"],
      ["/score", { model: "sim-embed", text_1: "a" }, "text_2"],
      ["/v1/score", { model: "sim-embed", text_1: ["a", "b"], text_2: ["c"] }, "text_2"],
      ["/tokenize", { model: "sim-llama-8b" }, "prompt"],
      ["/detokenize", { model: "sim-llama-8b", tokens: [1, -2] }, "tokens"],
      ["/tokenize", { prompt: "hi" }, "model"],
    ];
    for (const [path, body, param] of cases) {
      const { status, body: err } = await errorOf(await post(path, body));
      expect({ path, status, param: err.error.param }).toEqual({ path, status: 400, param });
    }
  });

  it("require a key, the key's scope and models, and the right kind of model", async () => {
    expect((await gateway("/tokenize", { method: "POST", body: JSON.stringify({ model: "sim-llama-8b", prompt: "hi" }), key: null })).status).toBe(401);
    // A key limited to one chat model may not rerank with another.
    const chatOnly = await errorOf(await post("/rerank", { model: "sim-embed", query: "q", documents: ["a"] }, inject("keys").chatOnlyModel));
    expect(chatOnly).toMatchObject({ status: 404, body: { error: { code: "model_not_found" } } });
    // An embeddings-only key may tokenize (either scope will do) but not open a Responses conversation.
    const scoped = await errorOf(await post("/v1/responses", { model: "sim-llama-8b", input: "hi" }, inject("keys").embeddingsOnly));
    expect(scoped).toMatchObject({ status: 403, body: { error: { code: "permission_denied" } } });
    const wrongKind = await errorOf(await post("/rerank", { model: "sim-llama-8b", query: "q", documents: ["a"] }));
    expect(wrongKind).toMatchObject({ status: 400, body: { error: { code: "invalid_value", param: "model" } } });
    expect((await gateway("/tokenize", { method: "GET" })).status).toBe(405);
  });

  it("refuse a client-set engine priority on every route, which would reorder other tenants' requests", async () => {
    for (const [path, body] of [
      ["/v1/chat/completions", { model: "sim-llama-8b", messages: [{ role: "user", content: "hi" }], priority: -100 }],
      ["/v1/responses", { model: "sim-llama-8b", input: "hi", priority: -5 }],
      ["/rerank", { model: "sim-embed", query: "q", documents: ["a"], priority: -1 }],
    ] as const) {
      const { status, body: err } = await errorOf(await post(path, body));
      expect({ path, status, param: err.error.param }).toEqual({ path, status: 400, param: "priority" });
    }
  });

  it("find the usage of a large rerank answer, which vLLM writes before its results", async () => {
    const results = Array.from({ length: 400 }, (_, index) => ({ index, document: { text: `document number ${index} `.repeat(4), multi_modal: null }, relevance_score: 1 / (index + 1) }));
    const body = JSON.stringify({ id: "rerank-1", model: "sim-embed", usage: { total_tokens: 3384 }, results });
    expect(body.length).toBeGreaterThan(32 * 1024);
    const read = await readJson(new Response(body), 1);
    expect(read.outcome.usage).toEqual({ promptTokens: 3384, completionTokens: 0, cachedPromptTokens: 0 });
  });

  it("meter rerank's usage, which has only total_tokens, as input tokens", () => {
    expect(parseUsage({ total_tokens: 31 })).toEqual({ promptTokens: 31, completionTokens: 0, cachedPromptTokens: 0 });
    expect(parseUsage({ prompt_tokens: 30, total_tokens: 30, completion_tokens: 0, prompt_tokens_details: null })).toEqual({ promptTokens: 30, completionTokens: 0, cachedPromptTokens: 0 });
  });
});
