import Anthropic from "@anthropic-ai/sdk";
import { describe, expect, it } from "vitest";
import { countPromptTokens, type SimEngine } from "../../backplane/src/sim/index.ts";
import { simClient, simPost, useSimEngine } from "../support/sim-harness.ts";

// The Anthropic Messages API of the simulated engine, as vLLM serves it (vllm/entrypoints/anthropic).

const start = useSimEngine();

const MODEL = "sim-llama-8b";
const LABELS = `model_name="${MODEL}",engine="0"`;
const SYSTEM = "Answer briefly.";
const MESSAGES = [{ role: "user" as const, content: "Tell me about trains." }];
/** The chat prompt the Messages request above becomes: the system prompt first, then the messages. */
const P = countPromptTokens([{ role: "system", content: SYSTEM }, ...MESSAGES]);

function anthropic(sim: SimEngine): Anthropic {
  return new Anthropic({ baseURL: sim.url, apiKey: "x", maxRetries: 0 });
}

/** Reads one sample from /metrics. */
async function metric(sim: SimEngine, name: string, labels = LABELS): Promise<number> {
  const text = await (await fetch(`${sim.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}} `));
  if (line === undefined) throw new Error(`no sample ${name}{${labels}}`);
  return Number(line.slice(line.lastIndexOf(" ") + 1));
}

async function waitFor(check: () => Promise<boolean>, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not reached");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Splits a Messages stream into events, checking each is `event: <type>\ndata: <json>\n\n` with data.type = type. */
async function messageEvents(res: Response): Promise<{ event: string; data: Record<string, unknown> }[]> {
  const text = await res.text();
  expect(text.endsWith("\n\n")).toBe(true);
  return text
    .slice(0, -2)
    .split("\n\n")
    .map((raw) => {
      const match = /^event: ([a-z_]+)\ndata: (\{.*\})$/.exec(raw);
      if (!match) throw new Error(`not an event/data pair: ${JSON.stringify(raw)}`);
      const data = JSON.parse(match[2] ?? "") as Record<string, unknown>;
      expect(data.type).toBe(match[1]);
      return { event: match[1] ?? "", data };
    });
}

/** Paths of every null value in a JSON value. */
function nullPaths(value: unknown, path = "$"): string[] {
  if (value === null) return [path];
  if (typeof value !== "object") return [];
  return Object.entries(value).flatMap(([key, v]) => nullPaths(v, `${path}.${key}`));
}

function textOf(message: Anthropic.Message): string {
  return message.content.map((block) => (block.type === "text" ? block.text : "")).join("");
}

describe("simulated vLLM: Anthropic Messages through the official client", () => {
  it("answers messages.create with text, end_turn and the usage a chat request with the converted messages reports", async () => {
    const sim = await start({ outputTokens: 12 });
    const message = await anthropic(sim).messages.create({ model: MODEL, max_tokens: 100, system: SYSTEM, messages: MESSAGES });
    expect(message.id).toMatch(/^chatcmpl-[0-9a-f]{32}$/);
    expect(message).toMatchObject({ type: "message", role: "assistant", model: MODEL, stop_reason: "end_turn" });
    expect(message.content).toHaveLength(1);
    expect(message.content[0]?.type).toBe("text");
    // 12 generated tokens: 11 words, then EOS (counted, no text).
    expect(textOf(message).split(" ")).toHaveLength(11);
    expect(message.usage).toEqual({ input_tokens: P, output_tokens: 12 });

    const chat = await simClient(sim).chat.completions.create({ model: MODEL, max_tokens: 100, messages: [{ role: "system", content: SYSTEM }, ...MESSAGES] });
    expect(chat.usage?.prompt_tokens).toBe(message.usage.input_tokens);
    expect(chat.choices[0]?.message.content).toBe(textOf(message));
  });

  it("streams with messages.stream, and the final message equals the non-stream answer", async () => {
    const sim = await start();
    const client = anthropic(sim);
    const params = { model: MODEL, max_tokens: 100, system: SYSTEM, messages: MESSAGES };
    const stream = client.messages.stream(params);
    const deltas: string[] = [];
    stream.on("text", (text) => deltas.push(text));
    const streamed = await stream.finalMessage();
    const plain = await client.messages.create(params);
    expect(streamed.usage).toEqual(plain.usage);
    expect(streamed.usage).toEqual({ input_tokens: P, output_tokens: 32 });
    expect(streamed.stop_reason).toBe("end_turn");
    expect(streamed.content).toEqual(plain.content);
    expect(deltas).toHaveLength(31);
    expect(deltas.join("")).toBe(textOf(plain));
  });

  it("counts tokens exactly as the Messages call meters input_tokens (system blocks, images, tool_use, tool_result)", async () => {
    // Images need a multimodal model (a text-only one refuses them, as vLLM does).
    const sim = await start({ models: [{ name: MODEL, kind: "generate", maxModelLen: 8192, vision: true }] });
    const client = anthropic(sim);
    const system: Anthropic.TextBlockParam[] = [
      { type: "text", text: "x-anthropic-billing-header: cch=1234;" },
      { type: "text", text: "You are terse." },
      { type: "text", text: " Use tools." },
    ];
    const messages: Anthropic.MessageParam[] = [
      {
        role: "user",
        content: [
          { type: "text", text: "Weather in Paris?" },
          { type: "image", source: { type: "url", url: "https://example.com/a.png" } },
        ],
      },
      { role: "assistant", content: [{ type: "text", text: "Checking." }, { type: "tool_use", id: "toolu_1", name: "get_weather", input: { city: "Paris" } }] },
      {
        role: "user",
        content: [
          { type: "tool_result", tool_use_id: "toolu_1", content: [{ type: "text", text: "21 C, sunny" }] },
          { type: "text", text: "And tomorrow?" },
        ],
      },
    ];
    const tools: Anthropic.Tool[] = [{ name: "get_weather", input_schema: { type: "object", properties: { city: { type: "string" } } } }];
    // What vLLM's converter makes of it; the billing header block is dropped.
    const expected = countPromptTokens([
      { role: "system", content: "You are terse. Use tools." },
      { role: "user", content: [{ type: "text", text: "Weather in Paris?" }, { type: "image_url", image_url: { url: "https://example.com/a.png" } }] },
      { role: "assistant", content: "Checking.", tool_calls: [{ id: "toolu_1", type: "function", function: { name: "get_weather", arguments: '{"city": "Paris"}' } }] },
      { role: "tool", content: "21 C, sunny" },
      { role: "user", content: "And tomorrow?" },
    ]);
    const counted = await client.messages.countTokens({ model: MODEL, system, messages, tools });
    expect(counted).toEqual({ input_tokens: expected, context_management: { original_input_tokens: expected } });
    const message = await client.messages.create({ model: MODEL, max_tokens: 20, system, messages, tools, tool_choice: { type: "auto" } });
    expect(message.usage.input_tokens).toBe(expected);
    // Tools are accepted and never called.
    expect(message.content.map((block) => block.type)).toEqual(["text"]);
  });

  it("stops at max_tokens with stop_reason max_tokens and output_tokens equal to max_tokens, streamed or not", async () => {
    const sim = await start();
    const client = anthropic(sim);
    const params = { model: MODEL, max_tokens: 5, messages: MESSAGES };
    const plain = await client.messages.create(params);
    expect(plain.stop_reason).toBe("max_tokens");
    expect(plain.usage.output_tokens).toBe(5);
    expect(textOf(plain).split(" ")).toHaveLength(5);
    const streamed = await client.messages.stream(params).finalMessage();
    expect(streamed.stop_reason).toBe("max_tokens");
    expect(streamed.usage).toEqual(plain.usage);
  });

  it("reports a matched stop sequence as end_turn, without the stop text and without stop_sequence", async () => {
    const sim = await start();
    const client = anthropic(sim);
    const full = textOf(await client.messages.create({ model: MODEL, max_tokens: 10, messages: MESSAGES }));
    const words = full.split(" ");
    const message = await client.messages.create({ model: MODEL, max_tokens: 10, messages: MESSAGES, stop_sequences: [` ${words[3] ?? ""}`] });
    expect(message.stop_reason).toBe("end_turn");
    expect(textOf(message)).toBe(words.slice(0, 3).join(" "));
    expect(message).not.toHaveProperty("stop_sequence");
  });

  it("throws the SDK's NotFoundError for a model the engine does not serve", async () => {
    const sim = await start();
    const failing = anthropic(sim).messages.create({ model: "nope", max_tokens: 5, messages: MESSAGES });
    await expect(failing).rejects.toBeInstanceOf(Anthropic.NotFoundError);
    await expect(failing).rejects.toMatchObject({ status: 404, type: "NotFoundError" });
  });
});

describe("simulated vLLM: Anthropic Messages on the wire", () => {
  it("streams message_start, one text block, message_delta with cumulative usage and message_stop: no ping, no [DONE]", async () => {
    const sim = await start({ outputTokens: 4 });
    // Claude Code posts to /v1/messages?beta=true.
    const res = await simPost(sim, "/v1/messages?beta=true", { model: MODEL, max_tokens: 100, system: SYSTEM, messages: MESSAGES, stream: true }, {
      headers: { "x-request-id": "req-1" },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    const events = await messageEvents(res);
    expect(events.map((e) => e.event)).toEqual([
      "message_start",
      "content_block_start",
      "content_block_delta",
      "content_block_delta",
      "content_block_delta",
      "content_block_stop",
      "message_delta",
      "message_stop",
    ]);
    const [first, blockStart, ...rest] = events.map((e) => e.data);
    expect(first).toEqual({
      type: "message_start",
      message: { id: "chatcmpl-req-1", type: "message", role: "assistant", content: [], model: MODEL, stop_reason: null, stop_sequence: null, usage: { input_tokens: P, output_tokens: 0 } },
    });
    expect(blockStart).toEqual({ type: "content_block_start", content_block: { type: "text", text: "" }, index: 0 });
    for (const delta of rest.slice(0, 3)) {
      expect(delta).toEqual({ type: "content_block_delta", delta: { type: "text_delta", text: expect.any(String) as unknown }, index: 0 });
    }
    expect(rest.slice(3)).toEqual([
      { type: "content_block_stop", index: 0 },
      { type: "message_delta", delta: { stop_reason: "end_turn" }, usage: { input_tokens: P, output_tokens: 4 } },
      { type: "message_stop" },
    ]);
  });

  it("answers non-stream with vLLM's keys in order and no null anywhere", async () => {
    const sim = await start();
    const res = await simPost(sim, "/v1/messages", { model: MODEL, max_tokens: 3, messages: MESSAGES, temperature: 0.2, top_p: 0.9, top_k: 5 });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    const body = (await res.json()) as Record<string, unknown>;
    expect(Object.keys(body)).toEqual(["id", "type", "role", "content", "model", "stop_reason", "usage"]);
    expect(nullPaths(body)).toEqual([]);
    expect(body.content).toEqual([{ type: "text", text: expect.any(String) as unknown }]);
    expect(body.usage).toEqual({ input_tokens: countPromptTokens(MESSAGES), output_tokens: 3 });
  });

  it("rejects invalid requests in vLLM's shapes: validation as the app-wide 400, serving errors as type error", async () => {
    const sim = await start();
    const post = async (path: string, body: unknown) => {
      const res = await simPost(sim, path, body);
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    // Pydantic rejects these before the Messages handler runs, so vLLM's RequestValidationError handler answers.
    const missing = await post("/v1/messages", { model: MODEL, messages: MESSAGES });
    expect(missing.status).toBe(400);
    expect(missing.body).toEqual({
      error: { message: "[{'type': 'missing', 'loc': ('body', 'max_tokens'), 'msg': 'Field required'}]", type: "Bad Request", param: null, code: 400 },
    });
    const zero = await post("/v1/messages", { model: MODEL, max_tokens: 0, messages: MESSAGES });
    expect(zero.status).toBe(400);
    expect(JSON.stringify(zero.body)).toContain("Value error, max_tokens must be positive");
    const empty = await post("/v1/messages", { model: "", max_tokens: 5, messages: MESSAGES });
    expect(JSON.stringify(empty.body)).toContain("Value error, Model is required");
    const role = await post("/v1/messages", { model: MODEL, max_tokens: 5, messages: [{ role: "tool", content: "x" }] });
    expect(role.status).toBe(400);

    // Errors of the serving code come back through translate_error_response.
    expect(await post("/v1/messages", { model: "nope", max_tokens: 5, messages: MESSAGES })).toEqual({
      status: 404,
      body: { type: "error", error: { type: "NotFoundError", message: "The model `nope` does not exist." } },
    });
    const tooLong = await post("/v1/messages", { model: MODEL, max_tokens: 9000, messages: MESSAGES });
    expect(tooLong.status).toBe(400);
    expect(tooLong.body).toEqual({ type: "error", error: { type: "BadRequestError", message: expect.stringContaining("maximum context length") as unknown } });
    expect(await post("/v1/messages", { model: "sim-embed", max_tokens: 5, messages: MESSAGES })).toEqual({
      status: 400,
      body: { type: "error", error: { type: "BadRequestError", message: "The model does not support Messages API" } },
    });
    expect(await post("/v1/messages/count_tokens", { model: "nope", messages: MESSAGES })).toEqual({
      status: 404,
      body: { type: "error", error: { type: "NotFoundError", message: "The model `nope` does not exist." } },
    });
  });

  it("ends a stream that fails mid-way with event: error and no message_stop", async () => {
    const sim = await start();
    const res = await simPost(sim, "/v1/messages", { model: MODEL, max_tokens: 50, messages: MESSAGES, stream: true, sim_fault: "error_mid_stream" });
    const events = await messageEvents(res);
    expect(events.map((e) => e.event)).toEqual(["message_start", "content_block_start", "content_block_delta", "content_block_delta", "content_block_delta", "error"]);
    expect(events.at(-1)?.data).toEqual({ type: "error", error: { type: "internal_error", message: expect.stringContaining("Simulated engine failure") as unknown } });
  });
});

describe("simulated vLLM: Anthropic Messages in the engine", () => {
  it("grows vllm:prompt_tokens_total and vllm:generation_tokens_total by exactly the metered usage", async () => {
    const sim = await start();
    const client = anthropic(sim);
    const before = { prompt: await metric(sim, "vllm:prompt_tokens_total"), generation: await metric(sim, "vllm:generation_tokens_total") };
    const plain = await client.messages.create({ model: MODEL, max_tokens: 100, system: SYSTEM, messages: MESSAGES });
    const streamed = await client.messages.stream({ model: MODEL, max_tokens: 7, messages: MESSAGES }).finalMessage();
    expect(await metric(sim, "vllm:prompt_tokens_total")).toBe(before.prompt + plain.usage.input_tokens + streamed.usage.input_tokens);
    expect(await metric(sim, "vllm:generation_tokens_total")).toBe(before.generation + plain.usage.output_tokens + streamed.usage.output_tokens);
    expect(await metric(sim, "vllm:request_success_total", `${LABELS},finished_reason="stop"`)).toBe(1);
    expect(await metric(sim, "vllm:request_success_total", `${LABELS},finished_reason="length"`)).toBe(1);
  });

  it("honours the engine's time to first token and inter-token delay", async () => {
    const sim = await start({ ttftMs: 60, interTokenMs: 20 });
    const sent = performance.now();
    await anthropic(sim).messages.create({ model: MODEL, max_tokens: 4, messages: MESSAGES });
    // First token after ttft, then three decode steps.
    expect(performance.now() - sent).toBeGreaterThanOrEqual(60 + 3 * 20 - 5);
  });

  it("shares the engine's slots with chat requests and stops generating when the client disconnects mid-stream", async () => {
    const sim = await start({ maxConcurrency: 1, interTokenMs: 20 });
    const controller = new AbortController();
    const body = { model: MODEL, max_tokens: 200, messages: MESSAGES, stream: true };
    const streaming = await simPost(sim, "/v1/messages", body, { signal: controller.signal });
    const reader = streaming.body?.getReader();
    const first = (await reader?.read())?.value as Uint8Array | undefined;
    expect(new TextDecoder().decode(first)).toMatch(/^event: message_start\n/);
    const chat = simPost(sim, "/v1/chat/completions", { messages: MESSAGES, max_tokens: 2 });
    await waitFor(async () => (await metric(sim, "vllm:num_requests_waiting")) === 1);
    expect(await metric(sim, "vllm:num_requests_running")).toBe(1);

    controller.abort();
    await reader?.cancel().catch(() => undefined);
    expect((await chat).status).toBe(200);
    await waitFor(async () => (await metric(sim, "vllm:num_requests_running")) === 0);
    expect(await metric(sim, "vllm:request_success_total", `${LABELS},finished_reason="abort"`)).toBe(1);
    expect(await metric(sim, "vllm:request_success_total", `${LABELS},finished_reason="length"`)).toBe(1);
    expect(await metric(sim, "vllm:generation_tokens_total")).toBeLessThan(200);
  });
});
