/**
 * End to end: chat features through the local stack (wrangler dev + backplane + simulated vLLM +
 * Postgres + Redis) with the official `openai` client: tool calls, guided JSON, images, logprobs,
 * n and reasoning reach the client exactly as the engine sent them, and the usage rows equal the
 * engine's usage (image tokens in the prompt, tool-call tokens in the completion).
 */
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { countPromptTokens, countTextTokens } from "../../backplane/src/sim/index.ts";
import { hermesText } from "../../backplane/src/sim/tools.ts";
import { openDb, type NodeDb } from "../../dev/db.ts";
import type { Stack } from "../../dev/stack.ts";
import { startTestStack, type TestStack } from "../support/e2e-stack.ts";
import { adminJson, usageRowOf } from "../support/e2e-calls.ts";

let started: TestStack;
let stack: Stack;
let db: NodeDb;
let client: OpenAI;
let engine: OpenAI;

const TEXT = "sim-llama-8b";
const VISION = "sim-vl";
const REASONER = "sim-r1";

const usageFor = (requestId: string | null | undefined) => usageRowOf(stack, db, requestId);
const admin = <T = unknown>(method: string, path: string, body?: unknown) => adminJson<T>(stack, method, path, body);

beforeAll(async () => {
  // The default models plus a multimodal and a reasoning one, which the catalogue learns from the admin API.
  const models = [`${TEXT}:generate:8192`, "sim-embed:embed:512", `${VISION}:generate:8192:vision`, `${REASONER}:generate:8192:reasoning`];
  started = await startTestStack("chatfeatures", { simArgs: ["--ttft-ms", "5", "--inter-token-ms", "2", ...models.flatMap((m) => ["--model", m])] });
  stack = started.stack;
  db = openDb(started.databaseUrl);
  client = new OpenAI({ baseURL: `${stack.gatewayUrl}/v1`, apiKey: stack.apiKey, maxRetries: 0 });
  engine = new OpenAI({ baseURL: `${stack.simUrl}/v1`, apiKey: "x", maxRetries: 0 });
  for (const id of [VISION, REASONER]) {
    await admin("PUT", `/models/${id}`, { kind: "chat", family: "qwen", context_length: 8192, input_price_per_m_tokens: 0.1, output_price_per_m_tokens: 0.2 });
  }
  // The catalogue and the node's models reach the gateway's routing within a heartbeat or two.
  const deadline = Date.now() + 30_000;
  for (;;) {
    const ok = await client.chat.completions
      .create({ model: REASONER, messages: [{ role: "user", content: "warm up" }], max_tokens: 1 })
      .then(() => true)
      .catch(() => false);
    if (ok) break;
    if (Date.now() > deadline) throw new Error("the new models never became routable");
    await new Promise((r) => setTimeout(r, 250));
  }
}, 120_000);

afterAll(async () => {
  await db?.close();
  await started?.close();
});

/** Masks what differs between two runs of the same request: response and tool-call ids, timestamps. */
function mask(text: string): string {
  return text.replace(/"chatcmpl-tool-[0-9a-f]{32}"/g, '"TOOL_ID"').replace(/"chatcmpl-[^"]+"/g, '"ID"').replace(/"created":\d+/g, '"created":0');
}

/** A parsed body with its ids and timestamps masked. */
function normalise(value: unknown): unknown {
  return JSON.parse(mask(JSON.stringify(value))) as unknown;
}

/** The stream of a request: its raw text (ids masked) and its chunks as JSON values. */
async function rawChunks(base: string, key: string, body: Record<string, unknown>): Promise<{ text: string; chunks: unknown[]; requestId: string | null }> {
  const res = await fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
  });
  expect(res.status).toBe(200);
  const text = await res.text();
  const events = text.trim().split("\n\n").map((e) => e.replace(/^data: /, ""));
  expect(events.at(-1)).toBe("[DONE]");
  return { text: mask(text), chunks: events.slice(0, -1).map((e) => JSON.parse(e) as unknown), requestId: res.headers.get("x-request-id") };
}

const WEATHER: OpenAI.ChatCompletionTool = {
  type: "function",
  function: {
    name: "get_weather",
    parameters: { type: "object", properties: { city: { type: "string" }, days: { type: "integer", minimum: 1, maximum: 7 } }, required: ["city", "days"] },
  },
};
const TIME: OpenAI.ChatCompletionTool = { type: "function", function: { name: "get_time", parameters: { type: "object", properties: { utc: { type: "boolean" } }, required: ["utc"] } } };
const tools = [WEATHER, TIME];
const askBoth: OpenAI.ChatCompletionMessageParam[] = [{ role: "user", content: "Call get_weather and get_time for Oslo." }];

function png(width: number, height: number): string {
  const b = Buffer.alloc(33);
  b.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  b.writeUInt32BE(13, 8);
  b.write("IHDR", 12, "latin1");
  b.writeUInt32BE(width, 16);
  b.writeUInt32BE(height, 20);
  return `data:image/png;base64,${b.toString("base64")}`;
}

describe("chat features through the gateway", () => {
  it("passes parallel tool calls through unchanged and meters the tool-call tokens", async () => {
    const request = { model: TEXT, messages: askBoth, tools, seed: 7 };
    const { data, response } = await client.chat.completions.create(request).withResponse();
    expect(normalise(data)).toEqual(normalise(await engine.chat.completions.create(request)));
    const message = data.choices[0]?.message;
    expect(data.choices[0]?.finish_reason).toBe("tool_calls");
    expect(message?.content).toBeNull();
    const calls = (message?.tool_calls ?? []).flatMap((c) => (c.type === "function" ? [c.function] : []));
    expect(calls.map((c) => c.name)).toEqual(["get_weather", "get_time"]);
    const completion = countTextTokens(hermesText(calls)) + 1;
    expect(data.usage).toMatchObject({ prompt_tokens: countPromptTokens(askBoth as never, tools), completion_tokens: completion });
    const row = await usageFor(response.headers.get("x-request-id"));
    expect(row).toMatchObject({ status: "ok", streamed: false, promptTokens: data.usage?.prompt_tokens, completionTokens: completion });
  });

  it("streams tool-call deltas byte for byte as the engine does; the client's helper reassembles them and the row meters them", async () => {
    const request = { model: TEXT, messages: askBoth, tools, seed: 8 };
    const direct = await rawChunks(stack.simUrl, "x", request);
    const viaGateway = await rawChunks(stack.gatewayUrl, stack.apiKey, request);
    expect(viaGateway.text).toBe(direct.text);
    const usage = (viaGateway.chunks.at(-1) as { usage: { prompt_tokens: number; completion_tokens: number } }).usage;
    expect(await usageFor(viaGateway.requestId)).toMatchObject({ status: "ok", streamed: true, promptTokens: usage.prompt_tokens, completionTokens: usage.completion_tokens });

    const final = await client.chat.completions.stream(request).finalChatCompletion();
    const plain = await engine.chat.completions.create(request);
    expect(final.choices[0]?.finish_reason).toBe("tool_calls");
    const args = (c: OpenAI.ChatCompletion) => c.choices[0]?.message.tool_calls?.map((t) => (t.type === "function" ? t.function : null));
    expect(args(final)).toEqual(args(plain));
  });

  it("returns json_schema output that parses, and a named tool choice's arguments, as the engine wrote them", async () => {
    const schema = { type: "object", properties: { title: { type: "string" }, pages: { type: "integer" }, tags: { type: "array", items: { type: "string" } } }, required: ["title", "pages", "tags"] };
    const request = { model: TEXT, messages: askBoth, seed: 2, response_format: { type: "json_schema" as const, json_schema: { name: "book", schema, strict: true } } };
    const { data, response } = await client.chat.completions.create(request).withResponse();
    expect(normalise(data)).toEqual(normalise(await engine.chat.completions.create(request)));
    const content = data.choices[0]?.message.content ?? "";
    expect(JSON.parse(content)).toEqual({ title: expect.any(String) as unknown, pages: expect.any(Number) as unknown, tags: expect.any(Array) as unknown });
    expect(await usageFor(response.headers.get("x-request-id"))).toMatchObject({ completionTokens: countTextTokens(content) + 1 });

    const named = await client.chat.completions.create({ model: TEXT, messages: askBoth, tools, tool_choice: { type: "function", function: { name: "get_time" } } });
    expect(named.choices[0]).toMatchObject({ finish_reason: "stop", message: { content: "" } });
    const call = named.choices[0]?.message.tool_calls?.[0];
    expect(call?.type === "function" && JSON.parse(call.function.arguments)).toEqual({ utc: expect.any(Boolean) as unknown });
  });

  it("meters image tokens in the prompt of a multimodal model, and passes a text-only model's 400 through", async () => {
    const messages: OpenAI.ChatCompletionMessageParam[] = [
      {
        role: "user",
        content: [
          { type: "text", text: "What is in these pictures?" },
          { type: "image_url", image_url: { url: png(640, 480) } },
          { type: "image_url", image_url: { url: "https://example.com/cat.jpg" } },
        ],
      },
    ];
    const { data, response } = await client.chat.completions.create({ model: VISION, messages, max_tokens: 4 }).withResponse();
    const text = countPromptTokens([{ role: "user", content: "What is in these pictures?" }]);
    // 640x480: 23 x 18 patches of 28 pixels; an http image counts 256.
    expect(data.usage?.prompt_tokens).toBe(text + 23 * 18 + 256);
    expect(await usageFor(response.headers.get("x-request-id"))).toMatchObject({ status: "ok", promptTokens: text + 23 * 18 + 256, completionTokens: 4 });

    await expect(client.chat.completions.create({ model: TEXT, messages, max_tokens: 4 })).rejects.toMatchObject({
      status: 400,
      message: expect.stringContaining(`${TEXT} is not a multimodal model`) as unknown,
    });
  });

  it("streams logprobs and n choices as the engine does, metering the sum of the choices", async () => {
    const request = { model: TEXT, messages: askBoth, n: 2, max_tokens: 5, seed: 4, logprobs: true, top_logprobs: 2 };
    const direct = await rawChunks(stack.simUrl, "x", request);
    const viaGateway = await rawChunks(stack.gatewayUrl, stack.apiKey, request);
    expect(viaGateway.text).toBe(direct.text);
    const row = await usageFor(viaGateway.requestId);
    expect(row).toMatchObject({ status: "ok", completionTokens: 10 });
    const entries = viaGateway.chunks.flatMap((c) => (c as { choices: { logprobs: { content: unknown[] } | null }[] }).choices[0]?.logprobs?.content ?? []);
    expect(entries).toHaveLength(10);
  });

  it("streams a reasoning model's reasoning_content, and meters the reasoning tokens as completion tokens", async () => {
    const request = { model: REASONER, messages: askBoth, seed: 5 };
    const direct = await rawChunks(stack.simUrl, "x", request);
    const viaGateway = await rawChunks(stack.gatewayUrl, stack.apiKey, request);
    expect(viaGateway.text).toBe(direct.text);
    const deltas = viaGateway.chunks.map((c) => (c as { choices: { delta: Record<string, string> }[] }).choices[0]?.delta ?? {});
    const reasoning = deltas.map((d) => d.reasoning_content ?? "").join("");
    const content = deltas.map((d) => d.content ?? "").join("");
    // 32 tokens: 15 reasoning words, </think>, 15 answer words, EOS.
    expect(reasoning.split(" ")).toHaveLength(15);
    expect(content.split(" ")).toHaveLength(15);
    expect(await usageFor(viaGateway.requestId)).toMatchObject({ status: "ok", streamed: true, completionTokens: 32 });
  });
});
