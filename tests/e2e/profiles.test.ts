/**
 * End to end: agent streaming profiles through the local stack (wrangler dev + backplane + simulated
 * vLLM + Postgres + Redis), with the official `openai` client where its paths allow: the voice,
 * copilot and gui routes and /v1/agents/stream re-chunk the stream to the profile's size keeping
 * OpenAI's chunk shape and the same text as the plain route; operators add and change profiles
 * through the admin API and the CLI; a profile's time limit ends the stream in band, stops the
 * engine and meters what was delivered; a client that goes away is metered for the tokens it got;
 * limits apply as on the plain route; usage rows record the profile.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDb, type NodeDb } from "../../dev/db.ts";
import type { Stack } from "../../dev/stack.ts";
import { startTestStack, type TestStack } from "../support/e2e-stack.ts";
import { adminJson, newTenantKey, usageRowOf } from "../support/e2e-calls.ts";

const run = promisify(execFile);
let started: TestStack;
let stack: Stack;
let db: NodeDb;

const MODEL = "sim-llama-8b";
const MESSAGES = [{ role: "user" as const, content: "Tell me a long story about trains." }];

beforeAll(async () => {
  started = await startTestStack("profiles", { simArgs: ["--ttft-ms", "5", "--inter-token-ms", "2"] });
  stack = started.stack;
  db = openDb(started.databaseUrl);
}, 120_000);

afterAll(async () => {
  await db?.close();
  await started?.close();
});

const clientAt = (path: string, apiKey = stack.apiKey) => new OpenAI({ baseURL: `${stack.gatewayUrl}${path}`, apiKey, maxRetries: 0 });

type Chunk = {
  id: string;
  object: string;
  created: number;
  model: string;
  choices: { index: number; delta?: { role?: string; content?: string | null }; text?: string; finish_reason: string | null }[];
  usage?: { prompt_tokens: number; completion_tokens: number } | null;
};

/** The SSE events of a body: parsed chunks, the error events, and whether it ended with [DONE]. */
function parseSse(text: string): { chunks: Chunk[]; errors: { error: { code: string; message: string } }[]; done: boolean } {
  const chunks: Chunk[] = [];
  const errors: { error: { code: string; message: string } }[] = [];
  let done = false;
  for (const block of text.split("\n\n")) {
    const data = block
      .split("\n")
      .find((l) => l.startsWith("data: "))
      ?.slice(6);
    if (data === undefined) continue;
    if (data === "[DONE]") done = true;
    else {
      const parsed = JSON.parse(data) as Chunk & { error?: { code: string; message: string } };
      if (parsed.error) errors.push(parsed as { error: { code: string; message: string } });
      else chunks.push(parsed);
    }
  }
  return { chunks, errors, done };
}

const contentChunks = (chunks: Chunk[]) => chunks.filter((c) => (c.choices[0]?.delta?.content ?? c.choices[0]?.text ?? "") !== "");
const textOf = (chunks: Chunk[]) => chunks.map((c) => c.choices[0]?.delta?.content ?? c.choices[0]?.text ?? "").join("");

async function post(path: string, body: unknown, apiKey = stack.apiKey, signal?: AbortSignal): Promise<Response> {
  return fetch(`${stack.gatewayUrl}${path}`, { method: "POST", headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" }, body: JSON.stringify(body), signal });
}

async function engineIdle(): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const metrics = await (await fetch(`${stack.simUrl}/metrics`)).text();
    const running = /vllm:num_requests_running\{[^}]*model_name="sim-llama-8b"[^}]*\} (\S+)/.exec(metrics)?.[1];
    if (running === "0.0" || running === "0") return;
    if (Date.now() > deadline) throw new Error(`the engine still runs ${running} requests`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("agent streaming profiles", () => {
  it("gui: the openai client gets 10-token chunks of the plain route's text, one id, finish on the last content chunk, usage when asked", async () => {
    const body = { model: MODEL, messages: MESSAGES, max_tokens: 57, seed: 7, temperature: 0.7, ...({ ignore_eos: true } as object) };
    const plain = await clientAt("/v1").chat.completions.create({ ...body, stream: false });
    const { data: stream, response } = await clientAt("/v1/gui")
      .chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } })
      .withResponse();
    expect(response.headers.get("x-switchyard-profile")).toBe("gui");
    const chunks: Chunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(textOf(chunks)).toBe(plain.choices[0]?.message.content);
    const usage = chunks.at(-1)?.usage;
    expect(usage).toEqual(expect.objectContaining({ completion_tokens: 57, prompt_tokens: plain.usage?.prompt_tokens }));
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    expect(new Set(chunks.map((c) => c.created)).size).toBe(1);
    expect(chunks.every((c) => c.object === "chat.completion.chunk" && c.model === MODEL)).toBe(true);
    expect(chunks[0]?.choices[0]?.delta?.role).toBe("assistant");
    const content = contentChunks(chunks);
    expect(content).toHaveLength(6); // 57 tokens: 5 × 10 + 7
    expect(content.slice(0, -1).every((c) => c.choices[0]?.finish_reason === null)).toBe(true);
    expect(content.at(-1)?.choices[0]?.finish_reason).toBe("length");
    const row = await usageRowOf(stack, db, response.headers.get("x-request-id"));
    expect(row).toMatchObject({ endpoint: "chat", status: "ok", streamed: true, streamProfile: "gui", completionTokens: 57, promptTokens: usage?.prompt_tokens });
  });

  it("tool calls: the openai client assembles the same calls from a profiled stream as from the plain route", async () => {
    const tools: OpenAI.ChatCompletionTool[] = [
      { type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" }, days: { type: "integer" } }, required: ["city", "days"] } } },
      { type: "function", function: { name: "get_time", parameters: { type: "object", properties: { utc: { type: "boolean" } }, required: ["utc"] } } },
    ];
    const request = { model: MODEL, messages: [{ role: "user" as const, content: "Call get_weather and get_time for Oslo." }], tools, seed: 8 };
    const plain = await clientAt("/v1").chat.completions.create(request, { headers: { "cache-control": "no-store" } });
    for (const prefix of ["/v1/voice", "/v1/gui"]) {
      const final = await clientAt(prefix).chat.completions.stream(request).finalChatCompletion();
      expect(final.choices[0]?.finish_reason).toBe("tool_calls");
      const calls = (c: OpenAI.ChatCompletion) => c.choices[0]?.message.tool_calls?.map((t) => (t.type === "function" ? t.function : null));
      expect(calls(final)).toEqual(calls(plain));
      expect(calls(final)?.length).toBe(2);
    }
  });

  it("voice: one token per chunk, and always a stream even when the body says stream: false", async () => {
    const res = await post("/v1/voice/chat/completions", { model: MODEL, messages: MESSAGES, max_tokens: 12, ignore_eos: true, stream: false });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const { chunks, done } = parseSse(await res.text());
    expect(done).toBe(true);
    expect(contentChunks(chunks)).toHaveLength(12);
    // The usage chunk the client did not ask for is not sent.
    expect(chunks.some((c) => c.choices.length === 0)).toBe(false);
    const row = await usageRowOf(stack, db, res.headers.get("x-request-id"));
    expect(row).toMatchObject({ streamProfile: "voice", completionTokens: 12, status: "ok" });
  });

  it("copilot: takes a completions prompt (openai client's completions) and a chat body alike, in 5-token chunks", async () => {
    const stream = await clientAt("/v1/copilot").completions.create({ model: MODEL, prompt: "def fib(n):", max_tokens: 23, stream: true, ...({ ignore_eos: true } as object) });
    const chunks: Chunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    const content = contentChunks(chunks);
    expect(content.map((c) => c.object)).toEqual(Array(5).fill("text_completion"));
    expect(content.at(-1)?.choices[0]?.finish_reason).toBe("length");
    const res = await post("/v1/copilot/completions", { model: MODEL, messages: MESSAGES, max_tokens: 10, ignore_eos: true });
    const chat = parseSse(await res.text());
    expect(contentChunks(chat.chunks).map((c) => c.object)).toEqual(["chat.completion.chunk", "chat.completion.chunk"]);
  });

  it("/v1/agents/stream serves any profile by type; an unknown type is a 404 listing them; a missing one a 400; n > 1 a 400", async () => {
    const res = await post("/v1/agents/stream?type=gui", { model: MODEL, messages: MESSAGES, max_tokens: 20, ignore_eos: true });
    expect(res.headers.get("x-switchyard-profile")).toBe("gui");
    expect(contentChunks(parseSse(await res.text()).chunks)).toHaveLength(2);
    const unknown = await post("/v1/agents/stream?type=telepathy", { model: MODEL, messages: MESSAGES });
    expect(unknown.status).toBe(404);
    const error = ((await unknown.json()) as { error: { message: string } }).error.message;
    expect(error).toContain("'telepathy'");
    expect(error).toContain("voice, copilot, gui");
    expect((await post("/v1/agents/stream", { model: MODEL, messages: MESSAGES })).status).toBe(400);
    const many = await post("/v1/voice/chat/completions", { model: MODEL, messages: MESSAGES, n: 2 });
    expect(many.status).toBe(400);
    expect(((await many.json()) as { error: { param: string } }).error.param).toBe("n");
  });

  it("operators add a profile with the CLI, change a built-in, and reset it; the gateway uses it at once", async () => {
    const cli = async (args: string[]) => {
      const { stdout } = await run(process.execPath, ["worker/cli/admin.ts", ...args, "--url", stack.gatewayUrl, "--token", stack.adminToken]);
      return stdout;
    };
    await cli(["profile", "set", "triple", "--chunk-tokens", "3", "--interval", "0ms", "--buffer-tokens", "30", "--timeout", "20s"]);
    expect(await cli(["profile", "list"])).toMatch(/triple\s+3\s+0 ms\s+30\s+20 s\s+operator/);
    const res = await post("/v1/agents/stream?type=triple", { model: MODEL, messages: MESSAGES, max_tokens: 9, ignore_eos: true });
    expect(contentChunks(parseSse(await res.text()).chunks)).toHaveLength(3);
    // A built-in changed, then reset to its default.
    await adminJson(stack, "PUT", "/stream-profiles/voice", { chunk_tokens: 4 });
    const changed = await post("/v1/voice/chat/completions", { model: MODEL, messages: MESSAGES, max_tokens: 8, ignore_eos: true });
    expect(contentChunks(parseSse(await changed.text()).chunks)).toHaveLength(2);
    await cli(["profile", "remove", "voice"]);
    const reset = await post("/v1/voice/chat/completions", { model: MODEL, messages: MESSAGES, max_tokens: 8, ignore_eos: true });
    expect(contentChunks(parseSse(await reset.text()).chunks)).toHaveLength(8);
    // Bad settings are refused with a clear message.
    const bad = await fetch(`${stack.gatewayUrl}/admin/stream-profiles/tiny`, {
      method: "PUT",
      headers: { authorization: `Bearer ${stack.adminToken}`, "content-type": "application/json" },
      body: JSON.stringify({ chunk_tokens: 10, buffer_tokens: 5, interval_ms: 0, timeout_ms: 5000 }),
    });
    expect(bad.status).toBe(400);
    expect(await bad.text()).toContain("buffer_tokens");
  });

  it("paces chunks: a 150 ms interval spreads 6 chunks over at least 750 ms", async () => {
    await adminJson(stack, "PUT", "/stream-profiles/slow-pace", { chunk_tokens: 1, interval_ms: 150, buffer_tokens: 50, timeout_ms: 30_000 });
    const started = Date.now();
    const res = await post("/v1/agents/stream?type=slow-pace", { model: MODEL, messages: MESSAGES, max_tokens: 6, ignore_eos: true });
    expect(contentChunks(parseSse(await res.text()).chunks)).toHaveLength(6);
    expect(Date.now() - started).toBeGreaterThanOrEqual(750);
  });

  it("a profile's time limit ends the stream in band with [DONE], stops the engine and meters exactly what was delivered", async () => {
    await adminJson(stack, "PUT", "/stream-profiles/short", { chunk_tokens: 2, interval_ms: 20, buffer_tokens: 20, timeout_ms: 1000 });
    const res = await post("/v1/agents/stream?type=short", { model: MODEL, messages: MESSAGES, max_tokens: 4000, ignore_eos: true, stream_options: { include_usage: true } });
    expect(res.status).toBe(200);
    const { chunks, errors, done } = parseSse(await res.text());
    expect(done).toBe(true);
    expect(errors).toHaveLength(1);
    expect(errors[0]?.error.code).toBe("stream_timeout");
    expect(errors[0]?.error.message).toContain("'short' streaming profile");
    const delivered = contentChunks(chunks).length;
    expect(delivered).toBeGreaterThan(5);
    const usage = chunks.find((c) => c.choices.length === 0)?.usage;
    // Two tokens per chunk: the usage counts the delivered tokens, not the engine's.
    expect(usage?.completion_tokens).toBe(delivered * 2);
    const row = await usageRowOf(stack, db, res.headers.get("x-request-id"));
    expect(row).toMatchObject({ streamProfile: "short", status: "error", completionTokens: delivered * 2, promptTokens: usage?.prompt_tokens });
    await engineIdle();
  });

  it("a client that goes away mid-stream is metered for the tokens delivered, not one per chunk", async () => {
    const controller = new AbortController();
    const res = await post("/v1/gui/chat/completions", { model: MODEL, messages: MESSAGES, max_tokens: 3000, ignore_eos: true }, stack.apiKey, controller.signal);
    const reader = (res.body as ReadableStream<Uint8Array> | null)?.getReader();
    if (!reader) throw new Error("no body");
    const decoder = new TextDecoder();
    let text = "";
    while (contentChunks(parseSse(text).chunks).length < 3) {
      const { value } = await reader.read();
      text += decoder.decode(value);
    }
    controller.abort();
    const row = await usageRowOf(stack, db, res.headers.get("x-request-id"), 15_000);
    expect(row.status).toBe("cancelled");
    expect(row.streamProfile).toBe("gui");
    expect(row.completionTokens).toBeGreaterThanOrEqual(30);
    expect(row.completionTokens).toBeLessThan(3000);
    await engineIdle();
  });

  it("limits apply as on the plain route", async () => {
    const tenant = await newTenantKey(stack, "profiles-limited");
    await adminJson(stack, "PUT", `/limits/key/${tenant.keyId}`, { rpm: 2 });
    for (let i = 0; i < 2; i++) {
      const res = await post("/v1/voice/chat/completions", { model: MODEL, messages: MESSAGES, max_tokens: 3, ignore_eos: true }, tenant.key);
      expect(res.status).toBe(200);
      await res.text();
    }
    const limited = await post("/v1/voice/chat/completions", { model: MODEL, messages: MESSAGES, max_tokens: 3, ignore_eos: true }, tenant.key);
    expect(limited.status).toBe(429);
  });
});
