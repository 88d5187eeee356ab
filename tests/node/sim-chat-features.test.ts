import type OpenAI from "openai";
import { describe, expect, it } from "vitest";
import { countPromptTokens, countTextTokens, parseModelSpec } from "../../backplane/src/sim/index.ts";
import { imageTokens } from "../../backplane/src/sim/images.ts";
import { EOS_TOKEN } from "../../backplane/src/sim/logprobs.ts";
import { hermesText } from "../../backplane/src/sim/tools.ts";
import { simClient, simPost, sseEvents, useSimEngine } from "../support/sim-harness.ts";

// Chat features of the simulated vLLM 0.11 (api-surfaces.md §3): tool calls, guided JSON, images,
// logprobs, n, stop, seed and reasoning, on the raw wire and through the official client.

const start = useSimEngine();

const MODEL = "sim-llama-8b";
const VISION = { name: "sim-vl", kind: "generate" as const, maxModelLen: 8192, vision: true };
const REASONER = { name: "sim-r1", kind: "generate" as const, maxModelLen: 8192, reasoning: true };

const WEATHER = {
  type: "function" as const,
  function: {
    name: "get_weather",
    description: "Weather for a city",
    parameters: {
      type: "object",
      properties: { city: { type: "string" }, days: { type: "integer", minimum: 1, maximum: 7 }, unit: { type: "string", enum: ["C", "F"] } },
      required: ["city", "days"],
    },
  },
};
const TIME = { type: "function" as const, function: { name: "get_time", parameters: { type: "object", properties: { utc: { type: "boolean" } }, required: ["utc"] } } };
const TOOLS = [WEATHER, TIME];
const ASK_BOTH = [{ role: "user" as const, content: "Use get_weather and get_time for Paris." }];

type Json = Record<string, unknown>;
type Chunk = { choices: { index: number; delta: Json; logprobs: unknown; finish_reason: string | null; stop_reason?: unknown }[]; usage?: Json };

/** A small JSON-schema check: types, required properties, enums, bounds, array items. */
function satisfies(value: unknown, schema: Json): boolean {
  if (Array.isArray(schema.enum)) return schema.enum.includes(value);
  switch (schema.type) {
    case "object": {
      if (value === null || typeof value !== "object" || Array.isArray(value)) return false;
      const v = value as Json;
      const props = (schema.properties ?? {}) as Record<string, Json>;
      return ((schema.required ?? []) as string[]).every((k) => k in v) && Object.entries(v).every(([k, x]) => !props[k] || satisfies(x, props[k]));
    }
    case "array":
      return Array.isArray(value) && (typeof schema.minItems !== "number" || value.length >= schema.minItems) && value.every((x) => satisfies(x, schema.items as Json));
    case "integer":
    case "number":
      return (
        typeof value === "number" &&
        (schema.type === "number" || Number.isInteger(value)) &&
        (typeof schema.minimum !== "number" || value >= schema.minimum) &&
        (typeof schema.maximum !== "number" || value <= schema.maximum)
      );
    case "boolean":
      return typeof value === "boolean";
    default:
      return typeof value === "string";
  }
}

async function chat(sim: Parameters<typeof simPost>[0], body: Json): Promise<{ status: number; body: Json }> {
  const res = await simPost(sim, "/v1/chat/completions", { model: MODEL, ...body });
  return { status: res.status, body: (await res.json()) as Json };
}

async function chunks(sim: Parameters<typeof simPost>[0], body: Json): Promise<Chunk[]> {
  const res = await simPost(sim, "/v1/chat/completions", { model: MODEL, stream: true, ...body });
  expect(res.status).toBe(200);
  const events = await sseEvents(res);
  expect(events.at(-1)).toBe("[DONE]");
  return events.slice(0, -1).map((e) => JSON.parse(e) as Chunk);
}

type ToolCallJson = { id: string; type: string; function: { name: string; arguments: string } };
const choiceOf = (body: Json, i = 0) => (body.choices as { message: Json & { tool_calls: ToolCallJson[] }; finish_reason: string; logprobs: unknown }[])[i];

/** 1x1-pixel-free image headers: the simulator reads only the size. */
function png(width: number, height: number): string {
  const b = Buffer.alloc(33);
  b.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  b.writeUInt32BE(13, 8);
  b.write("IHDR", 12, "latin1");
  b.writeUInt32BE(width, 16);
  b.writeUInt32BE(height, 20);
  return `data:image/png;base64,${b.toString("base64")}`;
}
function jpeg(width: number, height: number): string {
  const b = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 4, 0, 0, 0xff, 0xc0, 0, 11, 8, height >> 8, height & 255, width >> 8, width & 255, 1, 1, 0x11, 0]);
  return `data:image/jpeg;base64,${b.toString("base64")}`;
}

describe("simulated vLLM chat: tool calls", () => {
  it("calls the tools the last user message names, in parallel, in vLLM's non-stream shape with exact usage", async () => {
    const sim = await start();
    const { status, body } = await chat(sim, { messages: ASK_BOTH, tools: TOOLS });
    expect(status).toBe(200);
    const choice = choiceOf(body);
    expect(Object.keys(choice?.message ?? {})).toEqual(["role", "content", "refusal", "annotations", "audio", "function_call", "tool_calls", "reasoning_content"]);
    expect(choice?.message).toMatchObject({ role: "assistant", content: null, refusal: null, annotations: null, audio: null, function_call: null, reasoning_content: null });
    expect(choice?.finish_reason).toBe("tool_calls");
    const calls = choice?.message.tool_calls ?? [];
    expect(calls.map((c) => c.function.name)).toEqual(["get_weather", "get_time"]);
    for (const [i, call] of calls.entries()) {
      expect(Object.keys(call)).toEqual(["id", "type", "function"]);
      expect(call.id).toMatch(/^chatcmpl-tool-[0-9a-f]{32}$/);
      expect(call.type).toBe("function");
      expect(satisfies(JSON.parse(call.function.arguments), TOOLS[i]?.function.parameters ?? {})).toBe(true);
    }
    // The model wrote hermes markup; every token of it is a completion token, plus EOS.
    const text = hermesText(calls.map((c) => ({ name: c.function.name, arguments: c.function.arguments })));
    expect(body.usage).toEqual({
      prompt_tokens: countPromptTokens(ASK_BOTH, TOOLS),
      total_tokens: countPromptTokens(ASK_BOTH, TOOLS) + countTextTokens(text) + 1,
      completion_tokens: countTextTokens(text) + 1,
      prompt_tokens_details: null,
    });
  });

  it("streams auto tool calls as the hermes parser does: the name first, then argument fragments, then finish_reason tool_calls", async () => {
    const sim = await start();
    const request = { messages: ASK_BOTH, tools: TOOLS, seed: 5 };
    const plain = choiceOf((await chat(sim, request)).body);
    const stream = await chunks(sim, { ...request, stream_options: { include_usage: true } });
    expect(stream[0]?.choices[0]?.delta).toEqual({ role: "assistant", content: "" });
    const toolDeltas = stream.slice(1, -2).map((c) => (c.choices[0]?.delta.tool_calls as Json[])[0] ?? {});
    for (const index of [0, 1]) {
      const mine = toolDeltas.filter((d) => d.index === index);
      expect(mine[0]).toEqual({ id: expect.stringMatching(/^chatcmpl-tool-[0-9a-f]{32}$/) as unknown, type: "function", index, function: { name: ["get_weather", "get_time"][index] } });
      expect(mine.length).toBeGreaterThanOrEqual(3);
      for (const d of mine.slice(1)) expect(Object.keys(d)).toEqual(["index", "function"]);
      // The arguments start with the first value, as hermes holds them back until then.
      expect((mine[1]?.function as Json).arguments).toMatch(/^\{"[a-z]+": ("$|[a-z0-9]+$)/);
      expect(mine.slice(1).map((d) => (d.function as Json).arguments).join("")).toBe(plain?.message.tool_calls[index]?.function.arguments);
    }
    expect(stream.at(-2)?.choices[0]).toEqual({ index: 0, delta: { content: "" }, logprobs: null, finish_reason: "tool_calls", stop_reason: null, token_ids: null });
    expect(stream.at(-1)?.usage?.completion_tokens).toBe(countTextTokens(hermesText(plain?.message.tool_calls.map((c) => c.function) ?? [])) + 1);

    // The client's own stream helper reassembles the same calls.
    const final = await simClient(sim).chat.completions.stream({ model: MODEL, messages: ASK_BOTH, tools: TOOLS, seed: 5 }).finalChatCompletion();
    expect(final.choices[0]?.finish_reason).toBe("tool_calls");
    expect(final.choices[0]?.message.tool_calls?.map((c) => (c.type === "function" ? [c.function.name, c.function.arguments] : []))).toEqual(
      plain?.message.tool_calls.map((c) => [c.function.name, c.function.arguments]),
    );
  });

  it("keeps one call with parallel_tool_calls false and answers in text when no tool is named or after a tool result", async () => {
    const sim = await start();
    const one = choiceOf((await chat(sim, { messages: ASK_BOTH, tools: TOOLS, parallel_tool_calls: false })).body);
    expect(one?.message.tool_calls.map((c) => c.function.name)).toEqual(["get_weather"]);
    const none = choiceOf((await chat(sim, { messages: [{ role: "user", content: "Hello there" }], tools: TOOLS })).body);
    expect(none).toMatchObject({ finish_reason: "stop", message: { tool_calls: [] } });
    expect(typeof none?.message.content).toBe("string");

    const call = one?.message.tool_calls[0];
    const conversation = [
      ...ASK_BOTH,
      { role: "assistant", content: null, tool_calls: [call] },
      { role: "tool", tool_call_id: call?.id, content: "21 C and sunny" },
    ];
    const { body } = await chat(sim, { messages: conversation, tools: TOOLS });
    expect(choiceOf(body)).toMatchObject({ finish_reason: "stop", message: { tool_calls: [] } });
    expect((body.usage as Json).prompt_tokens).toBe(countPromptTokens(conversation as never, TOOLS));
    expect(countPromptTokens(conversation as never, TOOLS)).toBeGreaterThan(countPromptTokens(ASK_BOTH, TOOLS) + countTextTokens("21 C and sunny"));
  });

  it("always calls a named tool: content \"\" and the engine's finish_reason, streamed with the choice index and arguments on every delta", async () => {
    const sim = await start();
    const request = { messages: [{ role: "user", content: "Hi" }], tools: TOOLS, tool_choice: { type: "function", function: { name: "get_time" } }, n: 2, seed: 1 };
    const { body } = await chat(sim, request);
    for (const i of [0, 1]) {
      const choice = choiceOf(body, i);
      expect(choice).toMatchObject({ finish_reason: "stop", message: { content: "" } });
      expect(choice?.message.tool_calls).toHaveLength(1);
      expect(satisfies(JSON.parse(choice?.message.tool_calls[0]?.function.arguments ?? ""), TIME.function.parameters)).toBe(true);
    }
    const stream = await chunks(sim, request);
    for (const i of [0, 1]) {
      const mine = stream.filter((c) => c.choices[0]?.index === i).slice(1);
      const deltas = mine.map((c) => (c.choices[0]?.delta.tool_calls as Json[])[0] ?? {});
      expect(deltas[0]).toEqual({ id: expect.stringMatching(/^chatcmpl-tool-/) as unknown, type: "function", index: i, function: { name: "get_time", arguments: "{" } });
      expect(deltas.every((d) => d.index === i && typeof (d.function as Json).arguments === "string")).toBe(true);
      expect(deltas.map((d) => (d.function as Json).arguments).join("")).toBe(choiceOf(body, i)?.message.tool_calls[0]?.function.arguments);
      expect(mine.at(-1)?.choices[0]).toMatchObject({ delta: { tool_calls: [{ index: i, function: { arguments: "" } }] }, finish_reason: "tool_calls" });
    }
  });

  it("answers \"required\" with a guided array: the named tools (else the first), streamed with \"{\" on each call's first delta", async () => {
    const sim = await start();
    const plain = choiceOf((await chat(sim, { messages: [{ role: "user", content: "Go" }], tools: TOOLS, tool_choice: "required" })).body);
    expect(plain).toMatchObject({ finish_reason: "stop", message: { content: "" } });
    expect(plain?.message.tool_calls.map((c) => c.function.name)).toEqual(["get_weather"]);

    const stream = await chunks(sim, { messages: ASK_BOTH, tools: TOOLS, tool_choice: "required", seed: 2 });
    const deltas = stream.slice(1, -1).map((c) => (c.choices[0]?.delta.tool_calls as Json[])[0] ?? {});
    expect(deltas.filter((d) => "id" in d).map((d) => [d.index, (d.function as Json).name, (d.function as Json).arguments])).toEqual([
      [0, "get_weather", "{"],
      [1, "get_time", "{"],
    ]);
    const joined = [0, 1].map((i) => deltas.filter((d) => d.index === i).map((d) => (d.function as Json).arguments).join(""));
    const nonStream = choiceOf((await chat(sim, { messages: ASK_BOTH, tools: TOOLS, tool_choice: "required", seed: 2 })).body);
    expect(joined).toEqual(nonStream?.message.tool_calls.map((c) => c.function.arguments));
    expect(stream.at(-1)?.choices[0]).toMatchObject({ delta: {}, finish_reason: "tool_calls", stop_reason: null });
  });

  it("answers a \"required\" array cut by max_tokens with pydantic's 400, and validates tool_choice as vLLM does", async () => {
    const sim = await start();
    const cut = await chat(sim, { messages: ASK_BOTH, tools: TOOLS, tool_choice: "required", max_tokens: 6 });
    expect(cut.status).toBe(400);
    expect(cut.body.error).toMatchObject({ type: "BadRequestError", code: 400 });
    expect((cut.body.error as Json).message).toMatch(/^1 validation error for list\[FunctionDefinition\]\n {2}Invalid JSON: EOF while parsing/);

    const unknown = await chat(sim, { messages: ASK_BOTH, tools: TOOLS, tool_choice: { type: "function", function: { name: "nope" } } });
    expect(unknown.status).toBe(400);
    expect((unknown.body.error as Json).message).toContain("The tool specified in `tool_choice` does not match any of the specified `tools`");
    const noTools = await chat(sim, { messages: ASK_BOTH, tool_choice: "auto" });
    expect((noTools.body.error as Json).message).toContain("When using `tool_choice`, `tools` must be set.");
  });

  it("cuts an auto tool call at max_tokens: the raw text as content with finish length, while the stream says tool_calls", async () => {
    const sim = await start();
    const { body } = await chat(sim, { messages: ASK_BOTH, tools: TOOLS, max_tokens: 20 });
    expect(choiceOf(body)).toMatchObject({ finish_reason: "length", message: { tool_calls: [] } });
    expect(choiceOf(body)?.message.content).toMatch(/^<tool_call>\n\{"name": "get_weather", "arguments": \{/);
    const stream = await chunks(sim, { messages: ASK_BOTH, tools: TOOLS, max_tokens: 20 });
    expect(stream.at(-1)?.choices[0]?.finish_reason).toBe("tool_calls");
  });
});

describe("simulated vLLM chat: response_format", () => {
  const schema = {
    type: "object",
    properties: {
      name: { type: "string" },
      age: { type: "integer", minimum: 18, maximum: 99 },
      score: { type: "number" },
      tags: { type: "array", items: { type: "string" }, minItems: 2 },
      level: { type: "string", enum: ["low", "high"] },
      address: { type: "object", properties: { street: { type: "string" }, vip: { type: "boolean" } }, required: ["street", "vip"] },
    },
    required: ["name", "age", "score", "tags", "level", "address"],
  };

  it("writes JSON that satisfies a json_schema, counted token by token, the same streamed", async () => {
    const sim = await start();
    const response_format = { type: "json_schema" as const, json_schema: { name: "person", schema, strict: true } };
    const completion = await simClient(sim).chat.completions.create({ model: MODEL, messages: ASK_BOTH, response_format, seed: 9 });
    const content = completion.choices[0]?.message.content ?? "";
    expect(satisfies(JSON.parse(content), schema)).toBe(true);
    expect(completion.choices[0]?.finish_reason).toBe("stop");
    expect(completion.usage?.completion_tokens).toBe(countTextTokens(content) + 1);
    const stream = await chunks(sim, { messages: ASK_BOTH, response_format, seed: 9 });
    expect(stream.slice(1).map((c) => c.choices[0]?.delta.content).join("")).toBe(content);

    const object = await simClient(sim).chat.completions.create({ model: MODEL, messages: ASK_BOTH, response_format: { type: "json_object" } });
    expect(JSON.parse(object.choices[0]?.message.content ?? "")).toEqual({ answer: expect.any(String) as unknown });
  });

  it("just cuts the JSON at max_tokens, with finish_reason length", async () => {
    const sim = await start();
    const response_format = { type: "json_schema", json_schema: { name: "person", schema } };
    const full = choiceOf((await chat(sim, { messages: ASK_BOTH, response_format })).body)?.message.content as string;
    const cut = await chat(sim, { messages: ASK_BOTH, response_format, max_tokens: 7 });
    expect(choiceOf(cut.body)?.finish_reason).toBe("length");
    const text = choiceOf(cut.body)?.message.content as string;
    expect(full.startsWith(text)).toBe(true);
    expect(countTextTokens(text)).toBe(7);
    expect((cut.body.usage as Json).completion_tokens).toBe(7);
  });
});

describe("simulated vLLM chat: images", () => {
  it("adds image tokens to the prompt: 28-pixel patches of a data URL's size, 256 for a URL it never fetches", async () => {
    const sim = await start({ models: [VISION] });
    expect(imageTokens(png(300, 200))).toBe(11 * 8);
    expect(imageTokens(jpeg(56, 2000))).toBe(2 * 72);
    expect(imageTokens("https://example.com/cat.png")).toBe(256);
    const text = [{ role: "user" as const, content: "Describe these." }];
    const messages: OpenAI.ChatCompletionMessageParam[] = [
      {
        role: "user",
        content: [
          { type: "text", text: "Describe these." },
          { type: "image_url", image_url: { url: png(300, 200) } },
          { type: "image_url", image_url: { url: "https://example.com/cat.png" } },
        ],
      },
    ];
    const completion = await simClient(sim).chat.completions.create({ model: "sim-vl", messages, max_tokens: 3 });
    expect(completion.usage?.prompt_tokens).toBe(countPromptTokens(text) + 88 + 256);
    expect(completion.usage?.prompt_tokens).toBe(countPromptTokens(messages as never));
  });

  it("refuses images on a text-only model with vLLM's 400", async () => {
    const sim = await start();
    const { status, body } = await chat(sim, { messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: png(10, 10) } }] }] });
    expect(status).toBe(400);
    expect(body).toEqual({ error: { message: `${MODEL} is not a multimodal model None`, type: "BadRequestError", param: null, code: 400 } });
  });
});

describe("simulated vLLM chat: logprobs, n, stop, seed, reasoning", () => {
  it("returns logprobs in vLLM's shape: one entry per token (EOS too), sorted top_logprobs led by the sampled token, no refusal", async () => {
    const sim = await start({ outputTokens: 6 });
    const { body } = await chat(sim, { messages: ASK_BOTH, logprobs: true, top_logprobs: 3, seed: 4 });
    const choice = choiceOf(body);
    type Entry = { token: string; logprob: number; bytes: number[]; top_logprobs: { token: string; logprob: number; bytes: number[] }[] };
    const lp = choice?.logprobs as { content: Entry[] };
    expect(Object.keys(lp)).toEqual(["content"]);
    expect(lp.content).toHaveLength(6);
    expect(lp.content.at(-1)?.token).toBe(EOS_TOKEN);
    expect(lp.content.slice(0, -1).map((e) => e.token).join("")).toBe(choice?.message.content);
    for (const entry of lp.content) {
      expect(Object.keys(entry)).toEqual(["token", "logprob", "bytes", "top_logprobs"]);
      expect(entry.bytes).toEqual([...Buffer.from(entry.token)]);
      expect(entry.logprob).toBeLessThanOrEqual(0);
      expect(entry.top_logprobs).toHaveLength(3);
      expect(entry.top_logprobs[0]).toEqual({ token: entry.token, logprob: entry.logprob, bytes: entry.bytes });
      const values = entry.top_logprobs.map((t) => t.logprob);
      expect(values).toEqual([...values].sort((a, b) => b - a));
    }
    // Streamed: each chunk carries its own token's entry, the same values.
    const stream = await chunks(sim, { messages: ASK_BOTH, logprobs: true, top_logprobs: 3, seed: 4 });
    expect(stream.slice(1).flatMap((c) => (c.choices[0]?.logprobs as { content: Entry[] }).content)).toEqual(lp.content);
    const client = await simClient(sim).chat.completions.create({ model: MODEL, messages: ASK_BOTH, logprobs: true, top_logprobs: 0 });
    expect(client.choices[0]?.logprobs?.content?.[0]?.top_logprobs).toEqual([]);
  });

  it("validates top_logprobs like vLLM: negative or without logprobs in the request, above 20 in the engine (in-band once streaming)", async () => {
    const sim = await start();
    const negative = await chat(sim, { messages: ASK_BOTH, logprobs: true, top_logprobs: -1 });
    expect((negative.body.error as Json).message).toContain("`top_logprobs` must be a positive value.");
    const alone = await chat(sim, { messages: ASK_BOTH, top_logprobs: 2 });
    expect((alone.body.error as Json).message).toContain("when using `top_logprobs`, `logprobs` must be set to true.");
    const many = await chat(sim, { messages: ASK_BOTH, logprobs: true, top_logprobs: 21 });
    expect(many).toEqual({ status: 400, body: { error: { message: "Requested sample logprobs of 21, which is greater than max allowed: 20", type: "BadRequestError", param: null, code: 400 } } });
    const res = await simPost(sim, "/v1/chat/completions", { messages: ASK_BOTH, logprobs: true, top_logprobs: 21, stream: true });
    expect(res.status).toBe(200);
    expect(await sseEvents(res)).toEqual([
      '{"error": {"message": "Requested sample logprobs of 21, which is greater than max allowed: 20", "type": "BadRequestError", "param": null, "code": 400}}',
      "[DONE]",
    ]);
  });

  it("gives completions logprobs in the legacy shape", async () => {
    const sim = await start();
    const completion = await simClient(sim).completions.create({ model: MODEL, prompt: "Once", max_tokens: 3, logprobs: 2 });
    const lp = completion.choices[0]?.logprobs;
    expect(Object.keys(lp ?? {})).toEqual(["text_offset", "token_logprobs", "tokens", "top_logprobs"]);
    expect(lp?.tokens?.join("")).toBe(completion.choices[0]?.text);
    expect(lp?.text_offset).toEqual([0, lp?.tokens?.[0]?.length, (lp?.tokens?.[0]?.length ?? 0) + (lp?.tokens?.[1]?.length ?? 0)]);
    expect(lp?.top_logprobs?.map((t) => Object.keys(t ?? {}).length)).toEqual([2, 2, 2]);
    expect(lp?.top_logprobs?.[0]?.[lp.tokens?.[0] ?? ""]).toBe(lp?.token_logprobs?.[0]);
  });

  it("gives n choices their own tool arguments and sums their usage", async () => {
    const sim = await start();
    const { body } = await chat(sim, { messages: ASK_BOTH, tools: TOOLS, n: 3, seed: 11 });
    const choices = [0, 1, 2].map((i) => choiceOf(body, i));
    const texts = choices.map((c) => hermesText(c?.message.tool_calls.map((t) => t.function) ?? []));
    expect(new Set(texts).size).toBeGreaterThan(1);
    expect((body.usage as Json).completion_tokens).toBe(texts.reduce((sum, t) => sum + countTextTokens(t) + 1, 0));
  });

  it("ends at a stop string, excluded, counting only the tokens generated up to it, streamed or not", async () => {
    const sim = await start();
    const text = choiceOf((await chat(sim, { messages: ASK_BOTH, max_tokens: 10, seed: 3 })).body)?.message.content as string;
    const fifth = ` ${text.split(" ")[4]}`;
    const { body } = await chat(sim, { messages: ASK_BOTH, max_tokens: 10, seed: 3, stop: fifth });
    expect(choiceOf(body)).toMatchObject({ finish_reason: "stop", stop_reason: fifth, message: { content: text.slice(0, text.indexOf(fifth)) } });
    expect((body.usage as Json).completion_tokens).toBe(5);
    const stream = await chunks(sim, { messages: ASK_BOTH, max_tokens: 10, seed: 3, stop: [fifth], stream_options: { include_usage: true } });
    expect(stream.at(-1)?.usage?.completion_tokens).toBe(5);
    expect(stream.at(-2)?.choices[0]).toMatchObject({ finish_reason: "stop", stop_reason: fifth });
  });

  it("answers the same seed with the same text, tool arguments and logprobs, another seed differently", async () => {
    const sim = await start();
    const ask = async (seed: number) => (await chat(sim, { messages: ASK_BOTH, tools: TOOLS, tool_choice: "required", seed, logprobs: true })).body;
    const strip = (body: Json) => choiceOf(body)?.message.tool_calls.map((c) => c.function.arguments);
    expect(strip(await ask(1))).toEqual(strip(await ask(1)));
    expect(choiceOf(await ask(1))?.logprobs).toEqual(choiceOf(await ask(1))?.logprobs);
    const text = async (seed: number) => choiceOf((await chat(sim, { messages: ASK_BOTH, seed })).body)?.message.content;
    expect(await text(1)).toBe(await text(1));
    expect(await text(1)).not.toBe(await text(2));
  });

  it("streams a reasoning model's reasoning_content before its content; reasoning tokens count as completion tokens", async () => {
    const sim = await start({ models: [REASONER], outputTokens: 12 });
    const { body } = await chat(sim, { model: "sim-r1", messages: ASK_BOTH, seed: 6 });
    const message = choiceOf(body)?.message;
    // 12 tokens: 5 reasoning words, </think>, 5 answer words, EOS.
    expect((message?.reasoning_content as string).split(" ")).toHaveLength(5);
    expect((message?.content as string).split(" ")).toHaveLength(5);
    expect((body.usage as Json).completion_tokens).toBe(12);

    const stream = await chunks(sim, { model: "sim-r1", messages: ASK_BOTH, seed: 6, stream_options: { include_usage: true, continuous_usage_stats: true } });
    const deltas = stream.slice(1, -1).map((c) => (c.choices[0]?.delta ?? {}) as { reasoning_content?: string; content?: string });
    expect(deltas.slice(0, 5).every((d) => Object.keys(d).join() === "reasoning_content")).toBe(true);
    expect(deltas.slice(5).every((d) => Object.keys(d).join() === "content")).toBe(true);
    expect(deltas.map((d) => d.reasoning_content ?? "").join("")).toBe(message?.reasoning_content);
    expect(deltas.map((d) => d.content ?? "").join("")).toBe(message?.content);
    // No chunk for </think>: the running usage jumps from 5 to 7 tokens.
    expect(stream.slice(5, 7).map((c) => (c.usage as Json).completion_tokens)).toEqual([5, 7]);

    const hidden = await chat(sim, { model: "sim-r1", messages: ASK_BOTH, include_reasoning: false });
    expect(choiceOf(hidden.body)?.message.reasoning_content).toBeNull();
    const cut = await chat(sim, { model: "sim-r1", messages: ASK_BOTH, max_tokens: 3 });
    expect(choiceOf(cut.body)).toMatchObject({ finish_reason: "length", message: { content: null } });
  });

  it("reads vision and reasoning flags from a --model spec", () => {
    expect(parseModelSpec("qwen:vl:32768:vision:reasoning")).toEqual({ name: "qwen:vl", kind: "generate", maxModelLen: 32768, vision: true, reasoning: true });
    expect(parseModelSpec("r1:reasoning")).toEqual({ name: "r1", kind: "generate", maxModelLen: 8192, reasoning: true });
    expect(() => parseModelSpec("bge:embed:vision")).toThrow(/generate models only/);
  });
});
