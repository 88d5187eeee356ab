import { describe, expect, it } from "vitest";
import { answerFromJson, answerFromStream, replayEvents, replayJson } from "../../worker/src/cache/answers.ts";
import { clientVector, splitTokens, storedVector } from "../../worker/src/cache/embeddings.ts";
import { cacheDirectives, canonicalJson, embeddingInputs, embeddingKeys, responseKey, responseUncacheable } from "../../worker/src/cache/policy.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

describe("what the response cache may serve", () => {
  it("caches temperature 0 or a seed, never sampled requests, callable tools, logprobs or running usage", () => {
    const base = { model: "m", messages: [{ role: "user", content: "hi" }] };
    expect(responseUncacheable({ ...base, temperature: 0 })).toBeNull();
    expect(responseUncacheable({ ...base, temperature: 0.9, seed: 4, n: 3 })).toBeNull();
    expect(responseUncacheable(base)).toBe("not_deterministic");
    expect(responseUncacheable({ ...base, temperature: 0.2 })).toBe("not_deterministic");
    expect(responseUncacheable({ ...base, seed: 1.5 })).toBe("not_deterministic");
    const tools = [{ type: "function", function: { name: "f" } }];
    expect(responseUncacheable({ ...base, temperature: 0, tools })).toBe("tools");
    expect(responseUncacheable({ ...base, temperature: 0, tools, tool_choice: "auto" })).toBe("tools");
    expect(responseUncacheable({ ...base, temperature: 0, tools, tool_choice: "none" })).toBeNull();
    expect(responseUncacheable({ ...base, temperature: 0, tools: [] })).toBeNull();
    expect(responseUncacheable({ ...base, temperature: 0, functions: [{ name: "f" }] })).toBe("tools");
    expect(responseUncacheable({ ...base, temperature: 0, logprobs: true })).toBe("logprobs");
    expect(responseUncacheable({ ...base, temperature: 0, logprobs: false })).toBeNull();
    expect(responseUncacheable({ model: "m", prompt: "p", seed: 1, logprobs: 2 })).toBe("logprobs");
    expect(responseUncacheable({ ...base, temperature: 0, stream: true, stream_options: { continuous_usage_stats: true } })).toBe("continuous_usage");
  });

  it("reads Cache-Control as RFC 9111 does for requests: no-store wins over no-cache", () => {
    expect(cacheDirectives(undefined)).toEqual({ read: true, store: true });
    expect(cacheDirectives("max-age=0")).toEqual({ read: true, store: true });
    expect(cacheDirectives("No-Cache")).toEqual({ read: false, store: true });
    expect(cacheDirectives("no-cache, no-store")).toEqual({ read: false, store: false });
    expect(cacheDirectives(" no-store ")).toEqual({ read: false, store: false });
  });
});

describe("cache keys", () => {
  it("are the same for the same request in any key order or delivery, and never contain the prompt", async () => {
    const a = await responseKey("p:", "ten_a", "chat", "m", { model: "m", temperature: 0, messages: [{ role: "user", content: "secret prompt" }], stream: false });
    const b = await responseKey("p:", "ten_a", "chat", "m", { messages: [{ content: "secret prompt", role: "user" }], temperature: 0, stream: true, stream_options: { include_usage: true }, user: "u1", model: "alias" });
    expect(a).toBe(b);
    expect(a).toMatch(/^p:cache:r:[0-9a-f]{64}$/);
    expect(a).not.toContain("secret");
    // Another tenant, endpoint, model or field is another key.
    expect(await responseKey("p:", "ten_b", "chat", "m", { temperature: 0, messages: [{ role: "user", content: "secret prompt" }] })).not.toBe(a);
    expect(await responseKey("p:", "ten_a", "chat", "m2", { temperature: 0, messages: [{ role: "user", content: "secret prompt" }] })).not.toBe(a);
    expect(await responseKey("p:", "ten_a", "chat", "m", { temperature: 0, max_tokens: 5, messages: [{ role: "user", content: "secret prompt" }] })).not.toBe(a);
  });

  it("key each embeddings input on its own, with every field that shapes the vector", async () => {
    expect(embeddingInputs("x")).toEqual(["x"]);
    expect(embeddingInputs([1, 2, 3])).toEqual([[1, 2, 3]]);
    expect(embeddingInputs(["a", "b"])).toEqual(["a", "b"]);
    expect(embeddingInputs([[1], [2, 3]])).toEqual([[1], [2, 3]]);
    const [one] = await embeddingKeys("p:", "t", "e", { input: ["a", "b"] }, ["a"]);
    const [same] = await embeddingKeys("p:", "t", "e", { input: "a", user: "x" }, ["a"]);
    expect(one).toBe(same);
    // The vector is the same whatever its encoding: float and base64 answers share an entry.
    const [base64] = await embeddingKeys("p:", "t", "e", { input: "a", encoding_format: "base64" }, ["a"]);
    expect(base64).toBe(one);
    for (const extra of [{ dimensions: 64 }, { truncate_prompt_tokens: 8 }, { normalize: false }]) {
      const [other] = await embeddingKeys("p:", "t", "e", { input: "a", ...extra }, ["a"]);
      expect(other).not.toBe(one);
    }
    // The text "[1]" and the token ids [1] are different inputs.
    const [text, ids] = await embeddingKeys("p:", "t", "e", {}, ["[1]", [1]]);
    expect(text).not.toBe(ids);
  });

  it("writes canonical JSON with sorted keys at every depth", () => {
    expect(canonicalJson({ b: 1, a: [{ d: 2, c: 3 }], u: undefined })).toBe('{"a":[{"c":3,"d":2}],"b":1}');
  });
});

describe("splitting a batch's tokens over its inputs", () => {
  it("counts token ids exactly, shares the rest by text length, and always adds up", () => {
    expect(splitTokens(9, ["abc"])).toEqual([9]);
    expect(splitTokens(10, [[1, 2, 3], "aaaa", "aaaa"])).toEqual([3, 4, 3]);
    const parts = splitTokens(101, ["a".repeat(10), "b".repeat(30), [7, 8]]);
    expect(parts[2]).toBe(2);
    expect(parts.reduce((s, n) => s + n, 0)).toBe(101);
    expect(parts[1]).toBeGreaterThan(parts[0] ?? 0);
  });
});

const chunk = (id: string, choices: unknown[], extra: object = {}) => JSON.stringify({ id, object: "chat.completion.chunk", created: 1, model: "m", choices, ...extra });

describe("cached answers", () => {
  it("keeps a complete stream's chunks and assembles its JSON form; replays with the new id", () => {
    const payloads = [
      chunk("chatcmpl-old", [{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }]),
      chunk("chatcmpl-old", [{ index: 0, delta: { content: "Hello" }, logprobs: null, finish_reason: null }]),
      chunk("chatcmpl-old", [{ index: 0, delta: { content: " world" }, logprobs: null, finish_reason: "stop", stop_reason: null }]),
      chunk("chatcmpl-old", [], { usage: { prompt_tokens: 5, total_tokens: 8, completion_tokens: 3 } }),
      "[DONE]",
    ].join("\n");
    const entry = answerFromStream("chat", payloads);
    expect(entry).toMatchObject({ promptTokens: 5, completionTokens: 3, chunks: expect.any(Array) as unknown });
    expect(entry?.body).toMatchObject({ object: "chat.completion", choices: [{ index: 0, message: { role: "assistant", content: "Hello world" }, finish_reason: "stop" }] });
    if (!entry) return;
    const events = replayEvents(entry, "req_new", false, 2_000);
    expect(events).toHaveLength(4);
    expect(JSON.parse(events[1]?.slice(6) ?? "{}")).toEqual({ id: "chatcmpl-req_new", object: "chat.completion.chunk", created: 2, model: "m", choices: [{ index: 0, delta: { content: "Hello" }, logprobs: null, finish_reason: null }] });
    expect(replayEvents(entry, "req_new", true)).toHaveLength(5);
    expect(JSON.parse(dec.decode(replayJson(entry, "req_x")))).toMatchObject({ id: "chatcmpl-req_x", choices: [{ message: { content: "Hello world" } }] });
  });

  it("stores nothing of a stream cut short, failed, calling tools or not finished", () => {
    const done = (lines: string[]) => [...lines, chunk("c", [], { usage: { prompt_tokens: 1, completion_tokens: 1 } }), "[DONE]"].join("\n");
    const finished = chunk("c", [{ index: 0, delta: { content: "x" }, finish_reason: "stop" }]);
    expect(answerFromStream("chat", done([finished]))).not.toBeNull();
    expect(answerFromStream("chat", done([finished]).replace(/\n\[DONE\]$/, ""))).toBeNull();
    expect(answerFromStream("chat", done([finished, JSON.stringify({ error: { message: "boom" } })]))).toBeNull();
    expect(answerFromStream("chat", done([chunk("c", [{ index: 0, delta: { tool_calls: [{ index: 0 }] }, finish_reason: "tool_calls" }])]))).toBeNull();
    expect(answerFromStream("chat", done([chunk("c", [{ index: 0, delta: { content: "x" }, finish_reason: null }])]))).toBeNull();
    expect(answerFromStream("chat", done([chunk("c", [{ index: 0, delta: { content: "x" }, finish_reason: "abort" }])]))).toBeNull();
  });

  it("stores a JSON answer only when every choice finished and usage is known", () => {
    const body = (finish: string | null, usage: object | null = { prompt_tokens: 2, completion_tokens: 3 }) =>
      enc.encode(JSON.stringify({ id: "cmpl-1", object: "text_completion", created: 1, model: "m", choices: [{ index: 0, text: "hi", finish_reason: finish }], usage }));
    expect(answerFromJson("completions", body("length"))).toMatchObject({ promptTokens: 2, completionTokens: 3 });
    expect(answerFromJson("completions", body(null))).toBeNull();
    expect(answerFromJson("completions", body("stop", null))).toBeNull();
    const entry = answerFromJson("completions", body("stop"));
    if (!entry) throw new Error("no entry");
    // Streamed from a JSON entry: vLLM's completions chunk shape, then [DONE].
    const events = replayEvents(entry, "req_1", true, 0);
    expect(JSON.parse(events[0]?.slice(6) ?? "{}")).toEqual({ id: "cmpl-req_1", object: "text_completion", created: 0, model: "m", choices: [{ index: 0, text: "hi", logprobs: null, finish_reason: "stop", stop_reason: null }], usage: null });
    expect(events.at(-1)).toBe("data: [DONE]\n\n");
  });
});

describe("stored vectors", () => {
  it("keep float32 values as base64 and give the same floats or the same base64 back", () => {
    const floats = [0.1, -0.25, 1 / 3, 1e-8].map((v) => Math.fround(v));
    const stored = storedVector(floats);
    expect(typeof stored).toBe("string");
    expect(clientVector(stored ?? "", false)).toEqual(floats);
    expect(clientVector(stored ?? "", true)).toBe(stored);
    expect(storedVector(stored)).toBe(stored);
    expect(Buffer.from(stored ?? "", "base64").readFloatLE(4)).toBe(floats[1]);
    expect(storedVector({ not: "a vector" })).toBeNull();
  });
});
