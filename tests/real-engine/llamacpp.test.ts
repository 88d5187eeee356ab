/**
 * The whole path against a real engine: llama.cpp's llama-server (built by the global setup,
 * dev/real-engine/) behind a backplane with the `llamacpp` engine kind, the gateway under wrangler
 * dev, Postgres and Redis; the official `openai` and `@anthropic-ai/sdk` clients as callers. The model
 * is tiny with random weights (dev/real-engine/model.ts): its text is nonsense, but its tokenizer,
 * chat template, usage, grammar-constrained output and counters are the engine's own. Run with
 * `npm run test:real-engine` (docs/testing.md); not part of `npm test`.
 */
import Anthropic from "@anthropic-ai/sdk";
import { Redis } from "ioredis";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { parsePrometheus, sumMetric } from "../../backplane/src/engines/prometheus.ts";
import { openDb, type NodeDb } from "../../dev/db.ts";
import { startLlamaServer, type LlamaServer } from "../../dev/real-engine/server.ts";
import type { Stack } from "../../dev/stack.ts";
import type { ReconcileRunJson } from "../../worker/src/admin/wire.ts";
import { startTestStack, type TestStack } from "../support/e2e-stack.ts";
import { adminJson, usageRowOf } from "../support/e2e-calls.ts";
import { eq } from "drizzle-orm";
import { usageRecords } from "../../schema/tables/index.ts";
import { REDIS_URL } from "../support/fixtures.ts";

declare module "vitest" {
  export interface ProvidedContext {
    llama: { binary: string; src: string; model: string };
  }
}

const CHAT = "tiny-llama";
const EMBED = "tiny-embed";
let chatEngine: LlamaServer;
let embedEngine: LlamaServer;
let started: TestStack;
let stack: Stack;
let db: NodeDb;
let redis: Redis;
let openai: OpenAI;
let anthropic: Anthropic;

/** Polls `check` until it is true (expect.poll only works inside tests). */
async function until(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`not ready within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const usageFor = (requestId: string | null | undefined) => usageRowOf(stack, db, requestId, 15_000);
const admin = <T = unknown>(method: string, path: string, body?: unknown) => adminJson<T>(stack, method, path, body);

beforeAll(async () => {
  const { binary, src, model } = inject("llama");
  const cwd = process.cwd();
  [chatEngine, embedEngine] = await Promise.all([
    startLlamaServer({ binary, src, model, alias: CHAT, cwd }),
    startLlamaServer({ binary, src, model, alias: EMBED, embeddings: true, cwd }),
  ]);
  started = await startTestStack("real", {
    backplaneEnv: {
      BACKPLANE_ENGINES: `kind=llamacpp,id=llama-chat,url=${chatEngine.url},model=${CHAT};kind=llamacpp,id=llama-embed,url=${embedEngine.url},model=${EMBED}`,
      BACKPLANE_HEARTBEAT_INTERVAL_MS: "250",
      BACKPLANE_LOAD_INTERVAL_MS: "100",
    },
  });
  stack = started.stack;
  // Each llama-server slot holds context / parallel tokens: 2,048 here.
  await admin("PUT", `/models/${CHAT}`, { kind: "chat", family: "llama", context_length: 2048, input_price_per_m_tokens: 0.1, output_price_per_m_tokens: 0.2 });
  await admin("PUT", `/models/${EMBED}`, { kind: "embedding", family: "llama", context_length: 2048, input_price_per_m_tokens: 0.02 });
  db = openDb(started.databaseUrl);
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  openai = new OpenAI({ baseURL: `${stack.gatewayUrl}/v1`, apiKey: stack.apiKey, maxRetries: 0 });
  anthropic = new Anthropic({ baseURL: stack.gatewayUrl, apiKey: stack.apiKey, maxRetries: 0 });
  // The catalogue and the node's engines reach the gateway's routing within a heartbeat or two.
  await until(async () => {
    const res = await fetch(`${stack.gatewayUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" },
      body: JSON.stringify({ model: CHAT, messages: [{ role: "user", content: "warm up" }], max_tokens: 1 }),
    });
    await res.arrayBuffer();
    return res.status === 200;
  }, 30_000);
}, 180_000);

afterAll(async () => {
  redis?.disconnect();
  await db?.close();
  await started?.close();
  await Promise.all([chatEngine?.child.stop(), embedEngine?.child.stop()]);
});

/** One engine's lifetime token counters: llama.cpp counts processed and cache-reused prompt tokens apart. */
async function engineCounters(engine: LlamaServer): Promise<{ prompt: number; generation: number; processing: number }> {
  const samples = parsePrometheus(await (await fetch(`${engine.url}/metrics`)).text());
  return {
    prompt: (sumMetric(samples, "llamacpp:prompt_tokens_total") ?? 0) + (sumMetric(samples, "llamacpp:prompt_tokens_cached_total") ?? 0),
    generation: sumMetric(samples, "llamacpp:tokens_predicted_total") ?? 0,
    processing: sumMetric(samples, "llamacpp:requests_processing") ?? 0,
  };
}

// llama.cpp's extra that runs every sequence to its limit: lengths known in advance despite random weights.
type LlamaExtras = { ignore_eos?: boolean };
const ask = [{ role: "user" as const, content: "Name three rivers of Europe." }];

describe("chat, completions and embeddings through the gateway to llama-server", () => {
  it("answers a chat completion and meters the engine's own usage to the token", async () => {
    const params: OpenAI.ChatCompletionCreateParamsNonStreaming & LlamaExtras = { model: CHAT, messages: ask, max_tokens: 12, ignore_eos: true };
    const { data, response } = await openai.chat.completions.create(params).withResponse();
    expect(data.object).toBe("chat.completion");
    expect(data.choices[0]?.finish_reason).toBe("length");
    expect(data.usage?.completion_tokens).toBe(12);
    expect(data.usage?.prompt_tokens).toBeGreaterThan(5);
    const row = await usageFor(response.headers.get("x-request-id"));
    expect(row).toMatchObject({ status: "ok", endpoint: "chat", model: CHAT, promptTokens: data.usage?.prompt_tokens, completionTokens: 12, streamed: false });
    expect(row.cachedPromptTokens).toBe(data.usage?.prompt_tokens_details?.cached_tokens ?? 0);
  });

  for (const includeUsage of [false, true]) {
    it(`streams a chat completion ${includeUsage ? "with" : "without"} the usage chunk the client asked for, and meters it`, async () => {
      const params: OpenAI.ChatCompletionCreateParamsStreaming & LlamaExtras = {
        model: CHAT,
        messages: ask,
        max_tokens: 9,
        ignore_eos: true,
        stream: true,
        ...(includeUsage ? { stream_options: { include_usage: true } } : {}),
      };
      const { data: stream, response } = await openai.chat.completions.create(params).withResponse();
      let text = "";
      let usage: OpenAI.CompletionUsage | null | undefined = null;
      let finish: string | null | undefined = null;
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta.content ?? "";
        finish = chunk.choices[0]?.finish_reason ?? finish;
        if (chunk.usage) usage = chunk.usage;
      }
      expect(text.length).toBeGreaterThan(0);
      expect(finish).toBe("length");
      if (includeUsage) expect(usage?.completion_tokens).toBe(9);
      else expect(usage).toBeNull();
      const row = await usageFor(response.headers.get("x-request-id"));
      expect(row).toMatchObject({ status: "ok", streamed: true, completionTokens: 9 });
      expect(row.promptTokens).toBeGreaterThan(5);
      if (includeUsage) expect(row.promptTokens).toBe(usage?.prompt_tokens);
    });
  }

  it("serves /v1/completions streamed and not, metered alike", async () => {
    const body: OpenAI.CompletionCreateParamsNonStreaming & LlamaExtras = { model: CHAT, prompt: "Once upon a time", max_tokens: 7, ignore_eos: true };
    const { data, response } = await openai.completions.create(body).withResponse();
    expect(data.usage?.completion_tokens).toBe(7);
    expect(await usageFor(response.headers.get("x-request-id"))).toMatchObject({ endpoint: "completions", promptTokens: data.usage?.prompt_tokens, completionTokens: 7 });
    const streamed: OpenAI.CompletionCreateParamsStreaming & LlamaExtras = { ...body, stream: true };
    const { data: stream, response: streamedResponse } = await openai.completions.create(streamed).withResponse();
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.text ?? "";
    expect(text.length).toBeGreaterThan(0);
    expect(await usageFor(streamedResponse.headers.get("x-request-id"))).toMatchObject({ streamed: true, promptTokens: data.usage?.prompt_tokens, completionTokens: 7 });
  });

  it("embeds a batch on the embedding engine and meters its prompt tokens", async () => {
    const { data, response } = await openai.embeddings.create({ model: EMBED, input: ["a switchyard", "a rail yard"] }).withResponse();
    expect(data.data).toHaveLength(2);
    expect(data.data[0]?.embedding).toHaveLength(64);
    expect(data.usage.prompt_tokens).toBeGreaterThan(2);
    expect(await usageFor(response.headers.get("x-request-id"))).toMatchObject({ endpoint: "embeddings", model: EMBED, promptTokens: data.usage.prompt_tokens, completionTokens: 0 });
  });

  it("carries tools to the engine's chat template (the prompt grows by the rendered tool), streamed and not", async () => {
    const tools: OpenAI.ChatCompletionTool[] = [
      { type: "function", function: { name: "get_weather", description: "Weather for a city", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } } },
    ];
    const plain = await openai.chat.completions.create({ model: CHAT, messages: ask, max_tokens: 3 });
    const { data, response } = await openai.chat.completions.create({ model: CHAT, messages: ask, max_tokens: 3, tools, tool_choice: "auto" }).withResponse();
    expect(data.usage?.prompt_tokens ?? 0).toBeGreaterThan((plain.usage?.prompt_tokens ?? 0) + 20);
    expect(await usageFor(response.headers.get("x-request-id"))).toMatchObject({ promptTokens: data.usage?.prompt_tokens });
    const stream = await openai.chat.completions.create({ model: CHAT, messages: ask, max_tokens: 3, tools, stream: true, stream_options: { include_usage: true } });
    let usage: OpenAI.CompletionUsage | null | undefined = null;
    for await (const chunk of stream) if (chunk.usage) usage = chunk.usage;
    expect(usage?.prompt_tokens).toBe(data.usage?.prompt_tokens);
  });

  it("returns JSON that matches a json_schema response_format (the engine's grammar constrains the random model)", async () => {
    const data = await openai.chat.completions.create({
      model: CHAT,
      messages: [{ role: "user", content: "Give me a number." }],
      max_tokens: 200,
      response_format: { type: "json_schema", json_schema: { name: "answer", strict: true, schema: { type: "object", properties: { n: { type: "integer" } }, required: ["n"], additionalProperties: false } } },
    });
    const parsed = JSON.parse(data.choices[0]?.message.content ?? "") as { n: unknown };
    expect(Number.isInteger(parsed.n)).toBe(true);
  });
});

describe("the Responses API through the gateway to llama-server's own /v1/responses", () => {
  it("answers responses.create, streamed and not, metered from the engine's usage", async () => {
    const { data, response } = await openai.responses.create({ model: CHAT, input: "Say something.", max_output_tokens: 6 }).withResponse();
    expect(data.usage?.output_tokens).toBeGreaterThan(0);
    expect(await usageFor(response.headers.get("x-request-id"))).toMatchObject({ endpoint: "responses", status: "ok", promptTokens: data.usage?.input_tokens, completionTokens: data.usage?.output_tokens });
    // This llama.cpp's stream has no output_index, content_index or sequence_number, which the SDK's
    // responses.stream() helper requires; iterating the raw events works (docs/testing.md).
    const { data: stream, response: streamed } = await openai.responses.create({ model: CHAT, input: "Say something else.", max_output_tokens: 6, stream: true }).withResponse();
    let usage: OpenAI.Responses.ResponseUsage | undefined;
    const types = new Set<string>();
    for await (const event of stream) {
      types.add(event.type);
      if (event.type === "response.completed") usage = event.response.usage;
    }
    expect(types).toContain("response.output_text.delta");
    expect(usage?.output_tokens).toBeGreaterThan(0);
    expect(await usageFor(streamed.headers.get("x-request-id"))).toMatchObject({ endpoint: "responses", streamed: true, status: "ok", promptTokens: usage?.input_tokens, completionTokens: usage?.output_tokens });
  });
});

describe("llama-server's /tokenize and /detokenize through the gateway", () => {
  it("round-trips text through the engine's own tokenizer, with the key checked and nothing billed", async () => {
    const call = (path: string, body: unknown, key = stack.apiKey) =>
      fetch(`${stack.gatewayUrl}${path}`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: JSON.stringify(body) });
    const tokenized = await call("/tokenize", { model: CHAT, content: "Hello, switchyard!" });
    expect(tokenized.status).toBe(200);
    const { tokens } = (await tokenized.json()) as { tokens: number[] };
    expect(tokens.length).toBeGreaterThan(2);
    const detokenized = await call("/detokenize", { model: CHAT, tokens });
    expect(((await detokenized.json()) as { content: string }).content.trim()).toBe("Hello, switchyard!");
    expect(await usageFor(tokenized.headers.get("x-request-id"))).toMatchObject({ endpoint: "tokenize", promptTokens: 0, completionTokens: 0, costMicros: 0 });
    expect((await call("/tokenize", { model: CHAT, content: "x" }, `sk-sy-${"Q".repeat(43)}`)).status).toBe(401);
  });
});

describe("Anthropic Messages through the gateway to llama-server's own /v1/messages", () => {
  it("answers messages.create and meters input (with the engine's cache reads) and output tokens", async () => {
    const message = await anthropic.messages.create({ model: CHAT, max_tokens: 6, messages: [{ role: "user", content: "Say hello." }] });
    expect(message.type).toBe("message");
    expect(message.stop_reason).toBe("max_tokens");
    expect(message.usage.output_tokens).toBe(6);
    const input = message.usage.input_tokens + (message.usage.cache_read_input_tokens ?? 0) + (message.usage.cache_creation_input_tokens ?? 0);
    const row = await usageFor(message._request_id ?? null);
    expect(row).toMatchObject({ endpoint: "messages", status: "ok", promptTokens: input, completionTokens: 6, cachedPromptTokens: message.usage.cache_read_input_tokens ?? 0 });
  });

  it("streams with messages.stream and meters what message_start and message_delta reported", async () => {
    const stream = anthropic.messages.stream({ model: CHAT, max_tokens: 5, messages: [{ role: "user", content: "Count to three." }] });
    const final = await stream.finalMessage();
    expect(final.usage.output_tokens).toBe(5);
    expect(final.content[0]?.type).toBe("text");
    const row = await usageFor(stream.request_id ?? null);
    expect(row).toMatchObject({ endpoint: "messages", streamed: true, status: "ok", completionTokens: 5 });
    expect(row.promptTokens).toBe(final.usage.input_tokens + (final.usage.cache_read_input_tokens ?? 0) + (final.usage.cache_creation_input_tokens ?? 0));
  });

  it("counts tokens with messages.countTokens and records the call without billing tokens", async () => {
    const { data, response } = await anthropic.messages.countTokens({ model: CHAT, messages: [{ role: "user", content: "How long is this?" }] }).withResponse();
    expect(data.input_tokens).toBeGreaterThan(3);
    expect(await usageFor(response.headers.get("request-id"))).toMatchObject({ endpoint: "count_tokens", promptTokens: 0, completionTokens: 0, costMicros: 0 });
  });
});

describe("agent streaming profiles on the real engine (no running usage: a delta is a token)", () => {
  /** The data payloads of an SSE body, parsed, without [DONE]. */
  const payloads = (text: string) =>
    text
      .split("\n\n")
      .map((b) => b.split("\n").find((l) => l.startsWith("data: "))?.slice(6))
      .filter((d): d is string => d !== undefined && d !== "[DONE]")
      .map((d) => JSON.parse(d) as { choices?: { delta?: { content?: string }; finish_reason?: string | null }[]; usage?: { prompt_tokens: number; completion_tokens: number }; error?: { code: string } });
  const post = (path: string, body: unknown) =>
    fetch(`${stack.gatewayUrl}${path}`, { method: "POST", headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" }, body: JSON.stringify(body) });

  it("coalesces llama-server's deltas to the gui profile's chunks and meters the engine's usage", async () => {
    const res = await post("/v1/gui/chat/completions", { model: CHAT, messages: ask, max_tokens: 25, ignore_eos: true, stream_options: { include_usage: true } });
    expect(res.headers.get("x-switchyard-profile")).toBe("gui");
    const events = payloads(await res.text());
    const content = events.filter((e) => (e.choices?.[0]?.delta?.content ?? "") !== "");
    expect(content.length).toBeGreaterThanOrEqual(3);
    expect(content.length).toBeLessThan(25);
    expect(content.at(-1)?.choices?.[0]?.finish_reason).toBe("length");
    const usage = events.find((e) => e.choices?.length === 0)?.usage;
    expect(usage?.completion_tokens).toBe(25);
    const row = await usageFor(res.headers.get("x-request-id"));
    expect(row).toMatchObject({ status: "ok", streamProfile: "gui", completionTokens: 25, promptTokens: usage?.prompt_tokens });
  });

  it("ends at the profile's time limit, stops the engine, and meters the deltas delivered", async () => {
    await admin("PUT", "/stream-profiles/real-short", { chunk_tokens: 2, interval_ms: 20, buffer_tokens: 20, timeout_ms: 1500 });
    const res = await post("/v1/agents/stream?type=real-short", { model: CHAT, messages: ask, max_tokens: 1500, ignore_eos: true, stream_options: { include_usage: true } });
    const events = payloads(await res.text());
    expect(events.at(-1)?.error?.code).toBe("stream_timeout");
    const usage = events.find((e) => e.choices?.length === 0)?.usage;
    expect(usage?.completion_tokens).toBeGreaterThan(0);
    await expect.poll(async () => (await engineCounters(chatEngine)).processing, { timeout: 10_000 }).toBe(0);
    const row = await usageFor(res.headers.get("x-request-id"));
    expect(row).toMatchObject({ status: "error", streamProfile: "real-short", completionTokens: usage?.completion_tokens });
    expect(row.promptTokens).toBeGreaterThan(5);
  });
});

describe("the specialist council on the real engine", () => {
  it("votes with every specialist on llama-server, metering one row per call linked by the vote id", async () => {
    const specialist = (name: string, tag: string) => ({ name, persona: `You are ${name}. If you see a problem, write ${tag}.`, model: CHAT, sampling: { max_tokens: 12 }, concern_tags: [tag] });
    await admin("PUT", "/councils/ten_demo/real", { specialists: [specialist("crawdad", "SECURITY CONCERN"), specialist("turtle", "7GEN CONCERN"), specialist("raven", "STRATEGY CONCERN")], synthesiser: "raven" });
    const res = await fetch(`${stack.gatewayUrl}/v1/council/vote`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" },
      body: JSON.stringify({ question: "Should we delete all backups to save disk space?", council: "real" }),
    });
    expect(res.status).toBe(200);
    const vote = (await res.json()) as { id: string; responses: Record<string, string>; failures: Record<string, string>; consensus: string | null; usage: { total_tokens: number } };
    expect(Object.keys(vote.responses).sort()).toEqual(["crawdad", "raven", "turtle"]);
    expect(vote.failures).toEqual({});
    expect(typeof vote.consensus).toBe("string");
    // The random model's words raise no tag; what matters here is the path: three calls and a synthesis metered.
    await expect
      .poll(async () => {
        await stack.runScheduled();
        const rows = await db.db.select().from(usageRecords).where(eq(usageRecords.voteId, vote.id));
        return rows.length === 4 ? rows.reduce((n, r) => n + r.promptTokens + r.completionTokens, 0) : -1;
      }, { timeout: 15_000, interval: 200 })
      .toBe(vote.usage.total_tokens);
  });
});

describe("cancellation and reconciliation on the real engine", () => {
  it("stops the engine's work when the client abandons a stream, and meters what was delivered", async () => {
    const params: OpenAI.ChatCompletionCreateParamsStreaming & LlamaExtras = { model: CHAT, messages: ask, max_tokens: 1500, ignore_eos: true, stream: true };
    const { data: stream, response } = await openai.chat.completions.create(params).withResponse();
    let chunks = 0;
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) chunks++;
      if (chunks === 5) break; // leaving the loop aborts the request
    }
    await expect.poll(async () => (await engineCounters(chatEngine)).processing, { timeout: 10_000 }).toBe(0);
    const row = await usageFor(response.headers.get("x-request-id"));
    expect(row.status).toBe("cancelled");
    expect(row.completionTokens).toBeGreaterThanOrEqual(5);
    expect(row.completionTokens).toBeLessThan(1500);
  });

  it("finds zero drift between what the gateway metered and the engines' own counters", { timeout: 120_000 }, async () => {
    const reconcile = () => admin<ReconcileRunJson>("POST", "/reconciliation/run", { node_id: stack.nodeId });
    /** Waits for a heartbeat carrying both engines' current counters. */
    const heartbeat = async (after: number) => {
      const [chat, embed] = await Promise.all([engineCounters(chatEngine), engineCounters(embedEngine)]);
      await expect
        .poll(async () => {
          const raw = await redis.hget(`${started.redisPrefix}nodes:live`, stack.nodeId);
          const live = raw === null ? null : (JSON.parse(raw) as { at: number; counters?: Record<string, { promptTokens: number; generationTokens: number }> });
          const c = live?.counters;
          return live !== null && live.at > after && c?.["llama-chat"]?.promptTokens === chat.prompt && c["llama-chat"].generationTokens === chat.generation && c["llama-embed"]?.promptTokens === embed.prompt;
        }, { timeout: 10_000, interval: 50 })
        .toBe(true);
      return { prompt: chat.prompt + embed.prompt, generation: chat.generation + embed.generation };
    };
    const before = await heartbeat(0);
    const baseline = await reconcile();
    expect(baseline.nodes[0]?.outcome).toMatch(/baseline|reconciled/);

    await openai.chat.completions.create({ model: CHAT, messages: ask, max_tokens: 8 });
    await openai.chat.completions.create({ model: CHAT, messages: [...ask, { role: "assistant", content: "Sure." }, { role: "user", content: "Go on." }], max_tokens: 4 });
    const stream = await openai.chat.completions.create({ model: CHAT, messages: ask, max_tokens: 6, stream: true });
    for await (const chunk of stream) void chunk;
    await openai.completions.create({ model: CHAT, prompt: "In a galaxy far away", max_tokens: 5 });
    await openai.embeddings.create({ model: EMBED, input: ["ledger", "balance sheet"] });
    await anthropic.messages.create({ model: CHAT, max_tokens: 4, messages: [{ role: "user", content: "Reconcile." }] });

    const after = await heartbeat(Date.now());
    const run = await reconcile();
    expect(run.nodes).toMatchObject([{ node_id: stack.nodeId, outcome: "reconciled" }]);
    expect(run.data).toEqual([
      expect.objectContaining({
        engine_prompt_tokens: after.prompt - before.prompt,
        engine_generation_tokens: after.generation - before.generation,
        drift_prompt_tokens: 0,
        drift_generation_tokens: 0,
        alert: false,
      }),
    ]);
  });
});
