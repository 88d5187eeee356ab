import OpenAI from "openai";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { countPromptTokens, type SimChatMessage, type SimEngine } from "../../backplane/src/sim/index.ts";
import { ResponsesStore, type StoredResponse, storeEnabled } from "../../backplane/src/sim/responses-store.ts";
import { type ResponseBase, responseObject } from "../../backplane/src/sim/responses-wire.ts";
import { simClient, simPost, useSimEngine } from "../support/sim-harness.ts";

// The OpenAI Responses API of the simulated engine, as vLLM serves it (vllm/entrypoints/openai/responses).

const start = useSimEngine();

const MODEL = "sim-llama-8b";
const LABELS = `model_name="${MODEL}",engine="0"`;
const SYSTEM = "Answer briefly.";
const INPUT = "Tell me about trains.";
/** The chat prompt `{instructions: SYSTEM, input: INPUT}` becomes. */
const P = countPromptTokens([
  { role: "system", content: SYSTEM },
  { role: "user", content: INPUT },
]);
const STORE_ENV = "VLLM_ENABLE_RESPONSES_API_STORE";

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

/** The usage vLLM reports (no cache_write_tokens, which SDK 7.55+ types but vLLM never sends). */
function usage(input: number, output: number): Record<string, unknown> {
  return { input_tokens: input, input_tokens_details: { cached_tokens: 0 }, output_tokens: output, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: input + output };
}

interface WireEvent {
  event: string;
  data: Record<string, unknown>;
}

/** Splits a Responses stream into events, checking each is `event: <type>\ndata: <json>\n\n` with data.type = type. */
function wireEvents(text: string): WireEvent[] {
  expect(text.endsWith("\n\n")).toBe(true);
  return text
    .slice(0, -2)
    .split("\n\n")
    .map((raw) => {
      const match = /^event: ([a-z_.]+)\ndata: (\{.*\})$/.exec(raw);
      if (!match) throw new Error(`not an event/data pair: ${JSON.stringify(raw)}`);
      const data = JSON.parse(match[2] ?? "") as Record<string, unknown>;
      expect(data.type).toBe(match[1]);
      return { event: match[1] ?? "", data };
    });
}

/** Creates with vLLM's extra body fields, which the SDK's types do not know. */
function extra<T>(params: T, fields: Record<string, unknown>): T {
  return { ...params, ...fields };
}

describe("simulated vLLM: Responses through the official client", () => {
  it("answers responses.create with output_text, status completed and the usage a chat request with the same messages reports", async () => {
    const sim = await start({ outputTokens: 12 });
    const client = simClient(sim);
    const response = await client.responses.create({ model: MODEL, instructions: SYSTEM, input: INPUT });
    expect(response.id).toMatch(/^resp_[0-9a-f]{32}$/);
    expect(response).toMatchObject({ object: "response", status: "completed", model: MODEL, instructions: SYSTEM, incomplete_details: null, background: false });
    // Unset max_output_tokens: the rest of the context, reported as the effective limit.
    expect(response.max_output_tokens).toBe(8192 - P);
    expect(response.output).toHaveLength(1);
    expect(response.output[0]).toMatchObject({ type: "message", role: "assistant", status: "completed", id: expect.stringMatching(/^msg_[0-9a-f]{32}$/) as unknown });
    // 12 generated tokens: 11 words, then EOS (counted, no text).
    expect(response.output_text.split(" ")).toHaveLength(11);
    expect(response.usage).toEqual(usage(P, 12));

    const chat = await client.chat.completions.create({ model: MODEL, messages: [{ role: "system", content: SYSTEM }, { role: "user", content: INPUT }] });
    expect(chat.usage?.prompt_tokens).toBe(response.usage?.input_tokens);
    expect(chat.choices[0]?.message.content).toBe(response.output_text);
  });

  it("streams with responses.stream, whose final response has the non-stream text and usage", async () => {
    const sim = await start();
    const client = simClient(sim);
    const params = { model: MODEL, instructions: SYSTEM, input: INPUT, max_output_tokens: 100 };
    const stream = client.responses.stream(params);
    const deltas: string[] = [];
    stream.on("response.output_text.delta", (event) => deltas.push(event.delta));
    const streamed = await stream.finalResponse();
    const plain = await client.responses.create(params);
    expect(streamed.status).toBe("completed");
    expect(streamed.usage).toEqual(plain.usage);
    expect(streamed.usage).toEqual(usage(P, 32));
    expect(streamed.output_text).toBe(plain.output_text);
    expect(deltas).toHaveLength(31);
    expect(deltas.join("")).toBe(plain.output_text);
  });

  it("stops at max_output_tokens with status incomplete and reason max_output_tokens, streamed or not", async () => {
    const sim = await start();
    const client = simClient(sim);
    const params = { model: MODEL, input: INPUT, max_output_tokens: 5 };
    const plain = await client.responses.create(params);
    expect(plain.status).toBe("incomplete");
    expect(plain.incomplete_details).toEqual({ reason: "max_output_tokens" });
    expect(plain.usage?.output_tokens).toBe(5);
    expect(plain.output_text.split(" ")).toHaveLength(5);
    const streamed = await client.responses.stream(params).finalResponse();
    expect(streamed.status).toBe("incomplete");
    expect(streamed.incomplete_details).toEqual({ reason: "max_output_tokens" });
    expect(streamed.usage).toEqual(plain.usage);
  });

  it("uses vLLM's request_id as the response id, streamed or not", async () => {
    const sim = await start();
    const client = simClient(sim);
    const plain = await client.responses.create(extra({ model: MODEL, input: INPUT }, { request_id: "gw-1234" }));
    expect(plain.id).toBe("gw-1234");
    const streamed = await client.responses.stream(extra({ model: MODEL, input: INPUT }, { request_id: "gw-5678" })).finalResponse();
    expect(streamed.id).toBe("gw-5678");
  });

  it("converts input items as vLLM does: text parts, assistant turns, function calls and their outputs; tools are ignored", async () => {
    const sim = await start();
    const client = simClient(sim);
    const input: OpenAI.Responses.ResponseInput = [
      { role: "developer", content: "Use tools." },
      { role: "user", content: [{ type: "input_text", text: "Weather in Paris?" }] },
      { type: "message", role: "assistant", content: "Checking." },
      { type: "function_call", call_id: "call_1", name: "get_weather", arguments: '{"city":"Paris"}' },
      { type: "function_call_output", call_id: "call_1", output: "21 C, sunny" },
      { type: "message", role: "user", content: [{ type: "input_text", text: "And tomorrow?" }] },
    ];
    const expected: SimChatMessage[] = [
      { role: "system", content: SYSTEM },
      { role: "developer", content: "Use tools." },
      { role: "user", content: [{ type: "text", text: "Weather in Paris?" }] },
      // The function call folds into the assistant turn before it.
      { role: "assistant", content: "Checking.", tool_calls: [{ id: "call_1", function: { name: "get_weather", arguments: '{"city":"Paris"}' }, type: "function" }] },
      { role: "tool", content: "21 C, sunny" },
      { role: "user", content: [{ type: "text", text: "And tomorrow?" }] },
    ];
    const tools: OpenAI.Responses.Tool[] = [{ type: "function", name: "get_weather", parameters: { type: "object", properties: {} }, strict: false }];
    const response = await client.responses.create({ model: MODEL, instructions: SYSTEM, input, tools, max_output_tokens: 20 });
    expect(response.usage?.input_tokens).toBe(countPromptTokens(expected));
    expect(response.output.map((item) => item.type)).toEqual(["message"]);
    expect(response.tools).toEqual(tools);
  });

  it("without the store (vLLM's default): retrieve, cancel and previous_response_id are 404s, background is a 400", async () => {
    const sim = await start();
    const client = simClient(sim);
    // store defaults to true; vLLM silently does not store.
    const response = await client.responses.create({ model: MODEL, input: INPUT, store: true });
    const notFound = { error: { message: `Response with id '${response.id}' not found.`, type: "invalid_request_error", param: null, code: 404 } };
    await expect(client.responses.retrieve(response.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client.responses.retrieve(response.id)).rejects.toMatchObject({ status: 404, error: notFound.error });
    await expect(client.responses.cancel(response.id)).rejects.toMatchObject({ status: 404, error: notFound.error });
    const chained = client.responses.create({ model: MODEL, input: "More.", previous_response_id: response.id });
    await expect(chained).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    const background = client.responses.create({ model: MODEL, input: INPUT, background: true });
    await expect(background).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    await expect(background).rejects.toMatchObject({ status: 400, error: { type: "invalid_request_error", message: expect.stringContaining("VLLM_ENABLE_RESPONSES_API_STORE=1") as unknown } });
  });
});

describe("simulated vLLM: Responses with VLLM_ENABLE_RESPONSES_API_STORE=1", () => {
  let saved: string | undefined;
  beforeEach(() => {
    saved = process.env[STORE_ENV];
    process.env[STORE_ENV] = "1";
  });
  afterEach(() => {
    if (saved === undefined) delete process.env[STORE_ENV];
    else process.env[STORE_ENV] = saved;
  });

  it("retrieves a stored response as it was returned, streamed or not; store:false is not kept", async () => {
    const sim = await start();
    const client = simClient(sim);
    const plain = await client.responses.create({ model: MODEL, input: INPUT });
    expect(await client.responses.retrieve(plain.id)).toEqual(plain);
    const streamed = await client.responses.stream({ model: MODEL, input: INPUT }).finalResponse();
    const retrieved = await client.responses.retrieve(streamed.id);
    expect(retrieved.output_text).toBe(streamed.output_text);
    expect(retrieved.usage).toEqual(streamed.usage);
    const unstored = await client.responses.create({ model: MODEL, input: INPUT, store: false });
    await expect(client.responses.retrieve(unstored.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it("chains previous_response_id: the earlier input and output come first, input_tokens grow by that turn, new instructions replace the old", async () => {
    const sim = await start();
    const client = simClient(sim);
    const first = await client.responses.create({ model: MODEL, instructions: SYSTEM, input: INPUT, max_output_tokens: 10 });
    expect(first.usage?.input_tokens).toBe(P);
    const turn: SimChatMessage[] = [
      { role: "user", content: INPUT },
      { role: "assistant", content: first.output_text },
      { role: "user", content: "And planes?" },
    ];
    const second = await client.responses.create({ model: MODEL, input: "And planes?", previous_response_id: first.id, max_output_tokens: 10 });
    expect(second.previous_response_id).toBe(first.id);
    // Instructions are not carried over.
    expect(second.usage?.input_tokens).toBe(countPromptTokens(turn));
    const third = await client.responses.create({ model: MODEL, instructions: "Be terse.", input: "And planes?", previous_response_id: first.id, max_output_tokens: 10 });
    expect(third.usage?.input_tokens).toBe(countPromptTokens([{ role: "system", content: "Be terse." }, ...turn]));
    expect(third.usage?.input_tokens).toBeGreaterThan(P);
  });

  it("runs a background response that completes, is retrieved, and can no longer be cancelled", async () => {
    const sim = await start({ interTokenMs: 2 });
    const client = simClient(sim);
    const queued = await client.responses.create({ model: MODEL, input: INPUT, background: true, max_output_tokens: 8 });
    expect(queued).toMatchObject({ status: "queued", background: true, output: [], usage: null });
    await waitFor(async () => (await client.responses.retrieve(queued.id)).status !== "queued");
    const done = await client.responses.retrieve(queued.id);
    expect(done).toMatchObject({ id: queued.id, status: "incomplete", background: true, created_at: queued.created_at });
    expect(done.usage?.output_tokens).toBe(8);
    const cancel = client.responses.cancel(queued.id);
    await expect(cancel).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    await expect(cancel).rejects.toMatchObject({ error: { message: "Cannot cancel a synchronous response.", type: "invalid_request_error", code: 400 } });
    // A synchronous response cannot be cancelled either.
    const sync = await client.responses.create({ model: MODEL, input: INPUT });
    await expect(client.responses.cancel(sync.id)).rejects.toMatchObject({ status: 400 });
  });

  it("cancels a running background response: status cancelled, the generation stops and its slot is freed", async () => {
    const sim = await start({ interTokenMs: 20 });
    const client = simClient(sim);
    const queued = await client.responses.create({ model: MODEL, input: INPUT, background: true, max_output_tokens: 500 });
    await waitFor(async () => (await metric(sim, "vllm:num_requests_running")) === 1);
    const cancelled = await client.responses.cancel(queued.id);
    expect(cancelled).toMatchObject({ id: queued.id, status: "cancelled", output: [], usage: null });
    await waitFor(async () => (await metric(sim, "vllm:num_requests_running")) === 0);
    expect(await metric(sim, "vllm:request_success_total", `${LABELS},finished_reason="abort"`)).toBe(1);
    expect(await metric(sim, "vllm:generation_tokens_total")).toBeLessThan(500);
    expect((await client.responses.retrieve(queued.id)).status).toBe("cancelled");
    await expect(client.responses.cancel(queued.id)).rejects.toMatchObject({ status: 400 });
  });

  it("ends a background stream for its readers when the response is cancelled; a reader leaving does not stop it", async () => {
    const sim = await start({ interTokenMs: 20 });
    const res = await simPost(sim, "/v1/responses", { model: MODEL, input: INPUT, background: true, stream: true, max_output_tokens: 500, request_id: "resp_bg" });
    expect(res.status).toBe(200);
    const reader = res.body?.getReader();
    const first = (await reader?.read())?.value as Uint8Array | undefined;
    expect(new TextDecoder().decode(first)).toMatch(/^event: response\.created\n/);
    await reader?.cancel();
    // A second reader follows from the start; the run goes on without the first.
    const follower = fetch(`${sim.url}/v1/responses/resp_bg?stream=true`).then((r) => r.text());
    await waitFor(async () => (await metric(sim, "vllm:generation_tokens_total")) >= 3);
    expect(await metric(sim, "vllm:num_requests_running")).toBe(1);
    expect((await simPost(sim, "/v1/responses/resp_bg/cancel", {})).status).toBe(200);
    const events = wireEvents(await follower);
    expect(events[0]?.event).toBe("response.created");
    expect(events.at(-1)?.event).toBe("response.output_text.delta");
    await waitFor(async () => (await metric(sim, "vllm:num_requests_running")) === 0);
  });

  it("streams a background response to its creator and replays it with GET ?stream=true&starting_after=N", async () => {
    const sim = await start({ outputTokens: 6 });
    const client = simClient(sim);
    const stream = await client.responses.create({ model: MODEL, input: INPUT, background: true, stream: true });
    const live: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const event of stream) live.push(event);
    const completed = live.at(-1);
    if (completed?.type !== "response.completed") throw new Error(`last event ${completed?.type}`);
    expect(live.map((e) => e.sequence_number)).toEqual(live.map((_, i) => i));

    const replay: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const event of await client.responses.retrieve(completed.response.id, { stream: true, starting_after: 3 })) replay.push(event);
    expect(replay).toEqual(live.slice(4));
    // The SDK's helper rebuilds the response from a full replay.
    const rebuilt = await client.responses.stream({ response_id: completed.response.id }).finalResponse();
    const deltas = live.flatMap((e) => (e.type === "response.output_text.delta" ? [e.delta] : []));
    expect(deltas).toHaveLength(5);
    expect(rebuilt.output_text).toBe(deltas.join(""));
    expect(rebuilt.status).toBe("completed");
    expect(rebuilt.usage).toEqual(completed.response.usage);
  });
});

describe("simulated vLLM: Responses on the wire", () => {
  it("streams the spec's events in order with sequence numbers from 0, one item with content_index 0, and no [DONE]", async () => {
    const sim = await start({ outputTokens: 3 });
    const res = await simPost(sim, "/v1/responses", { model: MODEL, instructions: SYSTEM, input: INPUT, stream: true, request_id: "resp_wire" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    const text = await res.text();
    expect(text).not.toContain("[DONE]");
    const events = wireEvents(text);
    expect(events.map((e) => e.event)).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
      "response.output_text.delta",
      "response.output_text.delta",
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.completed",
    ]);
    const data = events.map((e) => e.data);
    expect(data.map((d) => d.sequence_number)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const [created, inProgress, added, partAdded, d1, d2, textDone, partDone, itemDone, completed] = data;
    expect(created?.response).toMatchObject({ id: "resp_wire", object: "response", status: "in_progress", output: [], usage: null, model: MODEL, instructions: SYSTEM });
    expect(inProgress?.response).toEqual(created?.response);
    const item = added?.item as { id: string };
    expect(item).toEqual({ id: expect.stringMatching(/^[0-9a-f]{32}$/) as unknown, type: "message", role: "assistant", status: "in_progress", content: [] });
    const at = { item_id: item.id, output_index: 0, content_index: 0 };
    expect(partAdded).toMatchObject({ ...at, part: { type: "output_text", text: "", annotations: [], logprobs: [] } });
    const words = [d1, d2].map((d) => {
      expect(d).toMatchObject({ ...at, logprobs: [] });
      return String(d?.delta);
    });
    const answer = words.join("");
    expect(textDone).toMatchObject({ ...at, text: answer, logprobs: [] });
    expect(partDone).toMatchObject({ ...at, part: { type: "output_text", text: answer, annotations: [] } });
    const final = { id: item.id, type: "message", role: "assistant", status: "completed", content: [{ type: "output_text", text: answer, annotations: [] }] };
    expect(itemDone).toMatchObject({ output_index: 0, item: final });
    expect(completed?.response).toMatchObject({ id: "resp_wire", status: "completed", output: [final], usage: usage(P, 3) });
  });

  it("answers non-stream with vLLM's ResponsesResponse keys in order", async () => {
    const sim = await start();
    const res = await simPost(sim, "/v1/responses", { model: MODEL, input: INPUT, max_output_tokens: 3, temperature: 0.5, metadata: { k: "v" } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    const body = (await res.json()) as Record<string, unknown>;
    expect(Object.keys(body)).toEqual([
      "id", "created_at", "incomplete_details", "instructions", "metadata", "model", "object", "output", "parallel_tool_calls",
      "temperature", "tool_choice", "tools", "top_p", "background", "max_output_tokens", "max_tool_calls", "previous_response_id",
      "prompt", "reasoning", "service_tier", "status", "text", "top_logprobs", "truncation", "usage", "user", "input_messages", "output_messages",
    ]);
    expect(body).toMatchObject({ metadata: { k: "v" }, temperature: 0.5, top_p: 1, tool_choice: "auto", tools: [], max_output_tokens: 3, status: "incomplete" });
    expect(body.output).toEqual([{ id: expect.any(String) as unknown, type: "message", role: "assistant", status: "completed", content: [{ type: "output_text", text: expect.any(String) as unknown, annotations: [], logprobs: null }] }]);
  });

  it("ends a stream that fails mid-way with event: error and nothing after it", async () => {
    const sim = await start();
    const res = await simPost(sim, "/v1/responses", { model: MODEL, input: INPUT, stream: true, sim_fault: "error_mid_stream", sim_fault_after: 2 });
    const events = wireEvents(await res.text());
    expect(events.map((e) => e.event)).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
      "response.output_text.delta",
      "response.output_text.delta",
      "error",
    ]);
    expect(events.at(-1)?.data).toEqual({
      type: "error",
      code: "InternalServerError",
      message: "Simulated engine failure after 2 tokens (sim_fault=error_mid_stream)",
      param: null,
      sequence_number: 6,
    });
    // The SDK throws it as an APIError.
    const failing = simClient(sim).responses.stream(extra({ model: MODEL, input: INPUT }, { sim_fault: "error_mid_stream" })).finalResponse();
    await expect(failing).rejects.toMatchObject({ message: expect.stringContaining("Simulated engine failure") as unknown });
  });

  it("grows vllm:prompt_tokens_total and vllm:generation_tokens_total by exactly the metered usage", async () => {
    const sim = await start();
    const client = simClient(sim);
    const before = { prompt: await metric(sim, "vllm:prompt_tokens_total"), generation: await metric(sim, "vllm:generation_tokens_total") };
    const plain = await client.responses.create({ model: MODEL, instructions: SYSTEM, input: INPUT });
    const streamed = await client.responses.stream({ model: MODEL, input: INPUT, max_output_tokens: 7 }).finalResponse();
    const input = (plain.usage?.input_tokens ?? 0) + (streamed.usage?.input_tokens ?? 0);
    const output = (plain.usage?.output_tokens ?? 0) + (streamed.usage?.output_tokens ?? 0);
    expect(await metric(sim, "vllm:prompt_tokens_total")).toBe(before.prompt + input);
    expect(await metric(sim, "vllm:generation_tokens_total")).toBe(before.generation + output);
    expect(await metric(sim, "vllm:request_success_total", `${LABELS},finished_reason="stop"`)).toBe(1);
    expect(await metric(sim, "vllm:request_success_total", `${LABELS},finished_reason="length"`)).toBe(1);
  });

  it("shares the engine's slots and stops generating when the client disconnects mid-stream", async () => {
    const sim = await start({ maxConcurrency: 1, interTokenMs: 20 });
    const controller = new AbortController();
    const streaming = await simPost(sim, "/v1/responses", { model: MODEL, input: INPUT, stream: true, max_output_tokens: 200 }, { signal: controller.signal });
    const reader = streaming.body?.getReader();
    const first = (await reader?.read())?.value as Uint8Array | undefined;
    expect(new TextDecoder().decode(first)).toMatch(/^event: response\.created\n/);
    const chat = simPost(sim, "/v1/chat/completions", { messages: [{ role: "user", content: INPUT }], max_tokens: 2 });
    await waitFor(async () => (await metric(sim, "vllm:num_requests_waiting")) === 1);
    expect(await metric(sim, "vllm:num_requests_running")).toBe(1);

    controller.abort();
    await reader?.cancel().catch(() => undefined);
    expect((await chat).status).toBe(200);
    await waitFor(async () => (await metric(sim, "vllm:num_requests_running")) === 0);
    expect(await metric(sim, "vllm:request_success_total", `${LABELS},finished_reason="abort"`)).toBe(1);
    expect(await metric(sim, "vllm:generation_tokens_total")).toBeLessThan(200);
  });

  it("rejects bad requests in vLLM's shapes and answers routes vLLM lacks like FastAPI", async () => {
    const sim = await start({ models: [{ name: MODEL, kind: "generate", maxModelLen: 64 }, { name: "sim-embed", kind: "embed", maxModelLen: 512 }] });
    const post = async (body: unknown) => {
      const res = await simPost(sim, "/v1/responses", body);
      const json: unknown = await res.json();
      return { status: res.status, body: json };
    };
    expect(await post({ model: MODEL })).toEqual({
      status: 400,
      body: { error: { message: "[{'type': 'missing', 'loc': ('body', 'input'), 'msg': 'Field required'}]", type: "Bad Request", param: null, code: 400 } },
    });
    expect((await post({ input: INPUT, background: true, store: false })).body).toMatchObject({ error: { message: expect.stringContaining("background can only be used when `store` is true") as unknown } });
    expect(await post({ model: "nope", input: INPUT })).toEqual({
      status: 404,
      body: { error: { message: "The model `nope` does not exist.", type: "NotFoundError", param: null, code: 404 } },
    });
    expect((await post({ model: "sim-embed", input: INPUT })).body).toMatchObject({ error: { message: "The model does not support Responses API", code: 400 } });
    const long = "word ".repeat(80);
    const tokens = countPromptTokens([{ role: "user", content: long }]);
    expect(await post({ input: long })).toEqual({
      status: 400,
      body: { error: { message: `The engine prompt length ${tokens} exceeds the max_model_len 64. Please reduce prompt.`, type: "invalid_request_error", param: null, code: 400 } },
    });
    // max_output_tokens beyond the context left is clamped, not refused.
    const clamped = (await post({ input: INPUT, max_output_tokens: 1000 })).body as { max_output_tokens: number; status: string };
    expect(clamped.max_output_tokens).toBe(64 - countPromptTokens([{ role: "user", content: INPUT }]));
    expect((await post({ input: INPUT, temperature: -1 })).body).toMatchObject({ error: { message: "temperature must be non-negative, got -1.0.", type: "BadRequestError" } });

    // vLLM has no DELETE and no input_items route: a path that matches another method's route is a 405.
    const call = async (method: string, path: string) => {
      const res = await fetch(`${sim.url}${path}`, { method });
      const json: unknown = await res.json();
      return { status: res.status, body: json };
    };
    expect(await call("DELETE", "/v1/responses/resp_1")).toEqual({ status: 405, body: { detail: "Method Not Allowed" } });
    expect(await call("GET", "/v1/responses/resp_1/input_items")).toEqual({ status: 404, body: { detail: "Not Found" } });
    expect(await call("GET", "/v1/responses")).toEqual({ status: 405, body: { detail: "Method Not Allowed" } });
    expect(await call("GET", "/v1/responses/resp_1/cancel")).toEqual({ status: 405, body: { detail: "Method Not Allowed" } });
    await expect(simClient(sim).responses.delete("resp_1")).rejects.toMatchObject({ status: 405 });
  });
});

describe("simulated vLLM: the Responses store", () => {
  const base: ResponseBase = {
    id: "r", created_at: 0, instructions: null, metadata: null, model: MODEL, parallel_tool_calls: true, temperature: 1, tool_choice: "auto", tools: [], top_p: 1,
    background: false, max_output_tokens: 1, max_tool_calls: null, previous_response_id: null, reasoning: null, service_tier: "auto", text: null,
    top_logprobs: null, truncation: "disabled", user: null,
  };
  const entry = (): StoredResponse => ({ response: responseObject(base, "completed", [], null), messages: [], log: null, cancel: null });

  it("keeps at most its limit of responses, evicting the oldest", () => {
    const store = new ResponsesStore(true, 2);
    store.put("a", entry());
    store.put("b", entry());
    store.put("c", entry());
    expect(store.size).toBe(2);
    expect([store.get("a"), store.get("b"), store.get("c")].map(Boolean)).toEqual([false, true, true]);
  });

  it("keeps nothing when disabled, and hides a response until it has finished", () => {
    const off = new ResponsesStore(false);
    off.put("a", entry());
    expect(off.get("a")).toBeUndefined();
    const on = new ResponsesStore(true);
    on.put("running", { ...entry(), response: null });
    expect(on.get("running")).toBeUndefined();
    expect(on.size).toBe(1);
  });

  it("reads VLLM_ENABLE_RESPONSES_API_STORE as vLLM does (an integer, not zero)", () => {
    expect([storeEnabled("1"), storeEnabled("0"), storeEnabled(undefined), storeEnabled("true"), storeEnabled("2")]).toEqual([true, false, false, false, true]);
  });
});
