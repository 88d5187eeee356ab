import { afterEach, describe, expect, it } from "vitest";
import { simPost, useSimEngine } from "../support/sim-harness.ts";
import { countPromptTokens, countTextTokens, startSimEngine, type SimEngine } from "../../backplane/src/sim/index.ts";

// vLLM's routes beyond OpenAI's on the simulated engine: /tokenize, /detokenize, /rerank, /score.

const start = useSimEngine();
let other: SimEngine | null = null;
afterEach(async () => {
  await other?.close();
  other = null;
});

const EMBED_LABELS = 'model_name="sim-embed",engine="0"';
const VISION = { name: "sim-vl", kind: "generate" as const, maxModelLen: 8192, vision: true as const };

interface TokenizeBody {
  count: number;
  max_model_len: number;
  tokens: number[];
  token_strs: string[] | null;
}
interface RerankBody {
  id: string;
  model: string;
  usage: { total_tokens: number };
  results: { index: number; document: { text: string; multi_modal: null }; relevance_score: number }[];
}
interface ScoreBody {
  id: string;
  object: string;
  created: number;
  model: string;
  data: { index: number; object: string; score: number }[];
  usage: Record<string, unknown>;
}

async function json<T>(res: Response | Promise<Response>): Promise<T> {
  return (await (await res).json()) as T;
}

async function metric(sim: SimEngine, name: string, labels = EMBED_LABELS): Promise<number> {
  const text = await (await fetch(`${sim.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}} `));
  if (line === undefined) throw new Error(`no sample ${name}{${labels}}`);
  return Number(line.slice(line.lastIndexOf(" ") + 1));
}

/** The sim's pair prompt: [CLS] query [SEP] document [SEP]. */
const pairTokens = (query: string, document: string) => 3 + countTextTokens(query) + countTextTokens(document);

async function chatPromptTokens(sim: SimEngine, body: Record<string, unknown>): Promise<number> {
  const res = await simPost(sim, "/v1/chat/completions", { max_tokens: 1, ...body });
  expect(res.status).toBe(200);
  return (await json<{ usage: { prompt_tokens: number } }>(res)).usage.prompt_tokens;
}

const TEXTS = [
  "Hello, world!",
  "  leading spaces, a tab\there, and a trailing newline\n",
  "Internationalization ünïcode 東京 naïve — déjà vu",
  '{"city": "Paris", "days": 3}\r\n\n\nmore',
  "",
];

describe("simulated vLLM: /tokenize and /detokenize", () => {
  it("answers TokenizeResponse with the prompt's BOS and text tokens, counted as /v1/completions counts them", async () => {
    const sim = await start();
    const res = await simPost(sim, "/tokenize", { model: "sim-llama-8b", prompt: "Hello, world!" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    const body = await json<TokenizeBody>(res);
    expect(Object.keys(body)).toEqual(["count", "max_model_len", "tokens", "token_strs"]);
    expect(body).toEqual({ count: 5, max_model_len: 8192, tokens: body.tokens, token_strs: null });
    expect(body.tokens[0]).toBe(128000);
    expect(body.count).toBe(countPromptTokens("Hello, world!"));
    const completion = await json<{ usage: { prompt_tokens: number } }>(simPost(sim, "/v1/completions", { prompt: "Hello, world!", max_tokens: 1 }));
    expect(completion.usage.prompt_tokens).toBe(body.count);

    const strs = await json<TokenizeBody>(simPost(sim, "/tokenize", { prompt: "Hello, world!", return_token_strs: true }));
    expect(strs.tokens).toEqual(body.tokens);
    expect(strs.token_strs).toEqual(["<|begin_of_text|>", "Hello", ",", " world", "!"]);
    const embed = await json<TokenizeBody>(simPost(sim, "/tokenize", { model: "sim-embed", prompt: "x" }));
    expect(embed.max_model_len).toBe(512);
  });

  it("round-trips text through detokenize: exactly without special tokens, after <|begin_of_text|> with them", async () => {
    const sim = await start();
    for (const text of TEXTS) {
      const plain = await json<TokenizeBody>(simPost(sim, "/tokenize", { prompt: text, add_special_tokens: false }));
      expect(plain.count).toBe(countTextTokens(text));
      expect(await json(simPost(sim, "/detokenize", { tokens: plain.tokens }))).toEqual({ prompt: text });
      // vLLM decodes with the tokenizer's defaults, which keep special tokens.
      const withBos = await json<TokenizeBody>(simPost(sim, "/tokenize", { prompt: text }));
      expect(withBos.tokens).toEqual([128000, ...plain.tokens]);
      expect(await json(simPost(sim, "/detokenize", { tokens: withBos.tokens }))).toEqual({ prompt: `<|begin_of_text|>${text}` });
    }
    // Whitespace is free in the simulator's tokenizer, so whitespace alone has no tokens.
    expect(await json(simPost(sim, "/tokenize", { prompt: " \n ", add_special_tokens: false }))).toMatchObject({ count: 0, tokens: [] });
  });

  it("gives the same ids on every engine, so another engine detokenizes them", async () => {
    const sim = await start();
    other = await startSimEngine({ ttftMs: 0, interTokenMs: 0, models: [{ name: "other", kind: "generate", maxModelLen: 4096 }] });
    const text = "The quick brown fox jumps over the lazy dog; naïve café!";
    const here = await json<TokenizeBody>(simPost(sim, "/tokenize", { prompt: text }));
    const there = await json<TokenizeBody>(simPost(other, "/tokenize", { prompt: text }));
    expect(there.tokens).toEqual(here.tokens);
    expect(there.max_model_len).toBe(4096);
    expect(await json(simPost(other, "/detokenize", { tokens: here.tokens.slice(1) }))).toEqual({ prompt: text });
  });

  it("counts messages exactly as the chat prompt_tokens, tools, names, tool calls and images included", async () => {
    const sim = await start({ models: [VISION, { name: "sim-embed", kind: "embed", maxModelLen: 512 }] });
    const tools = [{ type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } } }];
    const messages = [
      { role: "system", content: "You are terse." },
      { role: "user", name: "ada", content: [{ type: "text", text: "Weather in Paris?" }, { type: "image_url", image_url: { url: "https://example.com/paris.png" } }] },
      { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city": "Paris"}' } }] },
      { role: "tool", tool_call_id: "call_1", content: "sunny, 21 C" },
    ];
    const chat = await chatPromptTokens(sim, { model: "sim-vl", messages, tools, tool_choice: "none" });
    const tokenized = await json<TokenizeBody>(simPost(sim, "/tokenize", { model: "sim-vl", messages, tools, add_generation_prompt: true }));
    expect(tokenized.count).toBe(chat);
    expect(tokenized.tokens).toHaveLength(chat);
    // 256 image tokens for a URL the simulator does not fetch.
    expect(tokenized.tokens.filter((id) => id === 128256)).toHaveLength(256);

    const hello = [{ role: "user", content: "Hello" }];
    const full = await json<TokenizeBody>(simPost(sim, "/tokenize", { messages: hello, return_token_strs: true }));
    expect(full).toMatchObject({ count: 9, max_model_len: 8192 });
    expect(full.token_strs).toEqual(["<|begin_of_text|>", "<|start_header_id|>", "user", "<|end_header_id|>", "Hello", "<|eot_id|>", "<|start_header_id|>", "assistant", "<|end_header_id|>"]);
    expect(await json(simPost(sim, "/detokenize", { tokens: full.tokens }))).toEqual({
      prompt: "<|begin_of_text|><|start_header_id|>user<|end_header_id|>Hello<|eot_id|><|start_header_id|>assistant<|end_header_id|>",
    });
    const noPrompt = await json<TokenizeBody>(simPost(sim, "/tokenize", { messages: hello, add_generation_prompt: false }));
    expect(noPrompt.count).toBe(6);
    const open = await json<TokenizeBody>(simPost(sim, "/tokenize", { messages: hello, add_generation_prompt: false, continue_final_message: true }));
    expect(open.count).toBe(5);
    const extraBos = await json<TokenizeBody>(simPost(sim, "/tokenize", { messages: hello, add_special_tokens: true }));
    expect(extraBos.tokens.slice(0, 2)).toEqual([128000, 128000]);
    expect(extraBos.count).toBe(10);
  });

  it("answers vLLM's errors: unknown model, images on a text model, a body that is neither form, both template flags, bad ids", async () => {
    const sim = await start();
    const unknown = await simPost(sim, "/tokenize", { model: "nope", prompt: "x" });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toEqual({ error: { message: "The model `nope` does not exist.", type: "NotFoundError", param: null, code: 404 } });

    const image = [{ role: "user", content: [{ type: "image_url", image_url: { url: "https://example.com/a.png" } }] }];
    const textOnly = await simPost(sim, "/tokenize", { model: "sim-llama-8b", messages: image });
    expect(textOnly.status).toBe(400);
    expect(await textOnly.json()).toEqual({ error: { message: "sim-llama-8b is not a multimodal model None", type: "BadRequestError", param: null, code: 400 } });

    const neither = await simPost(sim, "/tokenize", { model: "sim-llama-8b" });
    expect(neither.status).toBe(400);
    expect(await neither.json()).toEqual({
      error: {
        message:
          "[{'type': 'missing', 'loc': ('body', 'TokenizeCompletionRequest', 'prompt'), 'msg': 'Field required'}, " +
          "{'type': 'missing', 'loc': ('body', 'TokenizeChatRequest', 'messages'), 'msg': 'Field required'}]",
        type: "Bad Request",
        param: null,
        code: 400,
      },
    });
    const both = await simPost(sim, "/tokenize", { messages: [{ role: "user", content: "x" }], add_generation_prompt: true, continue_final_message: true });
    expect(both.status).toBe(400);
    expect(((await both.json()) as { error: { message: string } }).error.message).toContain(
      "'msg': 'Value error, Cannot set both `continue_final_message` and `add_generation_prompt` to True.'",
    );

    const outside = await simPost(sim, "/detokenize", { tokens: [33, 5000] });
    expect(outside.status).toBe(400);
    expect(await outside.json()).toEqual({ error: { message: "Token id 5000 is out of vocabulary", type: "BadRequestError", param: null, code: 400 } });
    const missing = await simPost(sim, "/detokenize", { model: "sim-llama-8b" });
    expect(missing.status).toBe(400);
    expect(await missing.json()).toMatchObject({ error: { message: "[{'type': 'missing', 'loc': ('body', 'tokens'), 'msg': 'Field required'}]", type: "Bad Request" } });
    const wrongMethod = await fetch(`${sim.url}/tokenize`);
    expect(wrongMethod.status).toBe(405);
    expect(await wrongMethod.json()).toEqual({ detail: "Method Not Allowed" });
  });

  it("counts in no engine metric", async () => {
    const sim = await start();
    await simPost(sim, "/tokenize", { model: "sim-embed", prompt: "a few words here" });
    await simPost(sim, "/detokenize", { model: "sim-embed", tokens: [128000] });
    expect(await metric(sim, "vllm:prompt_tokens_total")).toBe(0);
    expect(await metric(sim, "vllm:request_success_total", `${EMBED_LABELS},finished_reason="stop"`)).toBe(0);
  });
});

const QUERY = "capital of France";
const DOCUMENTS = ["Berlin is the capital of Germany.", "Paris is the capital of France.", "Cats sleep all day.", "France exports wine."];

describe("simulated vLLM: /rerank and /score", () => {
  it("reranks documents by relevance, cut to top_n, with usage counting every pair", async () => {
    const sim = await start();
    const res = await simPost(sim, "/rerank", { model: "sim-embed", query: QUERY, documents: DOCUMENTS, top_n: 2 });
    expect(res.status).toBe(200);
    const body = await json<RerankBody>(res);
    expect(Object.keys(body)).toEqual(["id", "model", "usage", "results"]);
    expect(body.id).toMatch(/^rerank-[0-9a-f]{32}$/);
    expect(body.model).toBe("sim-embed");
    expect(body.usage).toEqual({ total_tokens: DOCUMENTS.reduce((sum, d) => sum + pairTokens(QUERY, d), 0) });
    expect(body.results).toHaveLength(2);
    expect(Object.keys(body.results[0] ?? {})).toEqual(["index", "document", "relevance_score"]);
    // vLLM >= 0.10's RerankDocument has both fields (model_dump keeps the null).
    expect(body.results[0]).toMatchObject({ index: 1, document: { text: DOCUMENTS[1], multi_modal: null } });

    const all = await json<RerankBody>(simPost(sim, "/rerank", { query: QUERY, documents: DOCUMENTS, top_n: 0 }));
    expect(all.model).toBe("sim-embed");
    expect(all.results).toHaveLength(DOCUMENTS.length);
    const scores = all.results.map((r) => r.relevance_score);
    expect(scores).toEqual([...scores].sort((a, b) => b - a));
    for (const s of scores) expect(s > 0 && s < 1).toBe(true);
    expect(all.results.slice(0, 2)).toEqual(body.results);
    expect(new Set(all.results.map((r) => r.index))).toEqual(new Set([0, 1, 2, 3]));
    for (const r of all.results) expect(r.document.text).toBe(DOCUMENTS[r.index]);
    expect(all.usage).toEqual(body.usage);
    const omitted = await json<RerankBody>(simPost(sim, "/rerank", { query: QUERY, documents: DOCUMENTS }));
    expect(omitted.results).toEqual(all.results);
  });

  it("answers /v1/rerank and /v2/rerank like /rerank, and names the answer after X-Request-Id", async () => {
    const sim = await start();
    const direct = await json<RerankBody>(simPost(sim, "/rerank", { query: QUERY, documents: DOCUMENTS }));
    for (const path of ["/v1/rerank", "/v2/rerank"]) {
      const other = await json<RerankBody>(simPost(sim, path, { query: QUERY, documents: DOCUMENTS }));
      expect({ ...other, id: "" }).toEqual({ ...direct, id: "" });
    }
    const named = await json<RerankBody>(simPost(sim, "/rerank", { query: QUERY, documents: ["x"] }, { headers: { "x-request-id": "abc123" } }));
    expect(named.id).toBe("rerank-abc123");
  });

  it("scores 1:N and pairwise N:N in input order, with the same scores rerank gives the same pairs", async () => {
    const sim = await start();
    const res = await simPost(sim, "/score", { model: "sim-embed", text_1: QUERY, text_2: DOCUMENTS });
    expect(res.status).toBe(200);
    const oneToMany = await json<ScoreBody>(res);
    expect(Object.keys(oneToMany)).toEqual(["id", "object", "created", "model", "data", "usage"]);
    expect(oneToMany.id).toMatch(/^score-[0-9a-f]{32}$/);
    expect(oneToMany).toMatchObject({ object: "list", model: "sim-embed" });
    expect(Math.abs(oneToMany.created - Date.now() / 1000)).toBeLessThan(5);
    expect(oneToMany.data.map((d) => [d.index, d.object])).toEqual(DOCUMENTS.map((_, i) => [i, "score"]));
    const total = DOCUMENTS.reduce((sum, d) => sum + pairTokens(QUERY, d), 0);
    expect(oneToMany.usage).toEqual({ prompt_tokens: total, total_tokens: total, completion_tokens: 0, prompt_tokens_details: null });
    const reranked = await json<RerankBody>(simPost(sim, "/rerank", { query: QUERY, documents: DOCUMENTS }));
    for (const r of reranked.results) expect(oneToMany.data[r.index]?.score).toBe(r.relevance_score);
    // A one-element list is the same as the string.
    const listed = await json<ScoreBody>(simPost(sim, "/v1/score", { text_1: [QUERY], text_2: DOCUMENTS }));
    expect(listed.data).toEqual(oneToMany.data);

    const queries = ["capital of France", "sleepy cats", "wine"];
    const docs = ["Paris is the capital of France.", "Cats sleep all day.", "Beer and bread."];
    const pairwise = await json<ScoreBody>(simPost(sim, "/score", { text_1: queries, text_2: docs }));
    expect(pairwise.data).toHaveLength(3);
    for (let i = 0; i < 3; i++) {
      const single = await json<ScoreBody>(simPost(sim, "/score", { text_1: queries[i], text_2: docs[i] }));
      expect(pairwise.data[i]?.score).toBe(single.data[0]?.score);
    }
    const pairTotal = queries.reduce((sum, q, i) => sum + pairTokens(q, docs[i] ?? ""), 0);
    expect(pairwise.usage).toMatchObject({ prompt_tokens: pairTotal, total_tokens: pairTotal });
    // Shared words raise the score; the hash only breaks ties.
    expect(pairwise.data[0]?.score).toBeGreaterThan(0.9);
    expect(pairwise.data[2]?.score).toBeLessThan(0.1);
  });

  it("answers vLLM's 400s: a generate model, mismatched or empty inputs, a pair beyond the context, a truncation beyond it", async () => {
    const sim = await start();
    const error = (message: string) => ({ error: { message, type: "BadRequestError", param: null, code: 400 } });
    const cases: [string, Record<string, unknown>, string][] = [
      ["/rerank", { model: "sim-llama-8b", query: "q", documents: ["d"] }, "The model does not support Rerank (Score) API"],
      ["/v1/score", { model: "sim-llama-8b", text_1: "q", text_2: "d" }, "The model does not support Score API"],
      ["/score", { text_1: ["a", "b"], text_2: ["a", "b", "c"] }, "Input lengths must be either 1:1, 1:N or N:N"],
      ["/score", { text_1: [], text_2: ["a"] }, "At least one text element must be given"],
      ["/rerank", { query: "q", documents: [] }, "At least one text_pair element must be given"],
      [
        "/score",
        { text_1: "q", text_2: "word ".repeat(600) },
        "This model's maximum context length is 512 tokens. However, you requested 604 tokens in the input for score. Please reduce the length of the input.",
      ],
      [
        "/rerank",
        { query: "q", documents: ["word ".repeat(600)] },
        "This model's maximum context length is 512 tokens. However, you requested 604 tokens in the input for embedding generation. Please reduce the length of the input.",
      ],
      [
        "/rerank",
        { query: "q", documents: ["d"], truncate_prompt_tokens: 513 },
        "truncate_prompt_tokens value (513) is greater than max_model_len (512). Please, select a smaller truncation size.",
      ],
    ];
    for (const [path, body, message] of cases) {
      const res = await simPost(sim, path, body);
      expect(res.status, `${path} ${message}`).toBe(400);
      expect(await res.json()).toEqual(error(message));
    }
    const unknown = await simPost(sim, "/rerank", { model: "nope", query: "q", documents: ["d"] });
    expect(unknown.status).toBe(404);
    const invalid = await simPost(sim, "/rerank", { query: "q" });
    expect(await invalid.json()).toEqual({
      error: { message: "[{'type': 'missing', 'loc': ('body', 'documents'), 'msg': 'Field required'}]", type: "Bad Request", param: null, code: 400 },
    });
    const truncated = await json<ScoreBody>(simPost(sim, "/score", { text_1: "q", text_2: "word ".repeat(600), truncate_prompt_tokens: -1 }));
    expect(truncated.usage).toMatchObject({ prompt_tokens: 512 });
    const kept = await json<RerankBody>(simPost(sim, "/rerank", { query: "q", documents: ["word ".repeat(600)], truncate_prompt_tokens: 10 }));
    expect(kept.usage.total_tokens).toBe(10);
  });

  it("counts every pair in the engine's metrics as an engine request, so prompt_tokens_total equals the usage", async () => {
    const sim = await start();
    const rerank = await json<RerankBody>(simPost(sim, "/rerank", { query: QUERY, documents: DOCUMENTS, top_n: 1 }));
    const score = await json<ScoreBody>(simPost(sim, "/score", { text_1: ["a b", "c"], text_2: ["b", "d e"] }));
    expect(await metric(sim, "vllm:prompt_tokens_total")).toBe(rerank.usage.total_tokens + Number(score.usage.prompt_tokens));
    expect(await metric(sim, "vllm:request_success_total", `${EMBED_LABELS},finished_reason="stop"`)).toBe(DOCUMENTS.length + 2);
    expect(await metric(sim, "vllm:request_prompt_tokens_count")).toBe(DOCUMENTS.length + 2);
    // Refused requests count nothing.
    await simPost(sim, "/score", { text_1: ["a", "b"], text_2: ["c"] });
    expect(await metric(sim, "vllm:request_success_total", `${EMBED_LABELS},finished_reason="stop"`)).toBe(DOCUMENTS.length + 2);
  });

  it("leaves the root routes open and guards /v1/rerank and /v1/score with the API key, as vLLM's middleware does", async () => {
    const sim = await start({ apiKey: "sekret" });
    const rerank = { query: QUERY, documents: DOCUMENTS };
    expect((await simPost(sim, "/rerank", rerank)).status).toBe(200);
    expect((await simPost(sim, "/v2/rerank", rerank)).status).toBe(200);
    expect((await simPost(sim, "/score", { text_1: "a", text_2: "b" })).status).toBe(200);
    expect((await simPost(sim, "/tokenize", { prompt: "a" })).status).toBe(200);
    expect((await simPost(sim, "/detokenize", { tokens: [128000] })).status).toBe(200);
    const guarded = await simPost(sim, "/v1/rerank", rerank);
    expect(guarded.status).toBe(401);
    expect(await guarded.json()).toEqual({ error: "Unauthorized" });
    expect((await simPost(sim, "/v1/score", { text_1: "a", text_2: "b" })).status).toBe(401);
    expect((await simPost(sim, "/v1/score", { text_1: "a", text_2: "b" }, { headers: { authorization: "Bearer sekret" } })).status).toBe(200);
  });

  it("fails with a bare 500 on sim_fault engine_error, before counting anything", async () => {
    const sim = await start();
    const res = await simPost(sim, "/rerank", { query: "q", documents: ["d"], sim_fault: "engine_error" });
    expect(res.status).toBe(500);
    expect(res.headers.get("content-length")).toBe("0");
    expect(await res.text()).toBe("");
    expect(await metric(sim, "vllm:prompt_tokens_total")).toBe(0);
  });
});
