import { describe, expect, it } from "vitest";
import { parseUsage } from "../../schema/contracts/usage-tap.ts";
import { usageFromTail } from "../../worker/src/proxy/json-tap.ts";
import { tapSse } from "../../worker/src/proxy/sse-tap.ts";
import { sourceOf, textOf as text } from "./sse-streams.ts";
import { anthropicSseError } from "../../worker/src/anthropic/errors.ts";

const ev = (type: string, data: unknown) => `event: ${type}\ndata: ${JSON.stringify(data)}\n\n`;

/** A vLLM /v1/messages stream (api-surfaces.md §2.4): input in message_start, cumulative output in message_delta. */
const vllmStream = [
  ev("message_start", { type: "message_start", message: { id: "chatcmpl-1", type: "message", role: "assistant", model: "m", content: [], usage: { input_tokens: 12, output_tokens: 0 } } }),
  ev("content_block_start", { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } }),
  ev("content_block_delta", { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "Hello" } }),
  ev("content_block_delta", { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: " there" } }),
  ev("content_block_stop", { type: "content_block_stop", index: 0 }),
  ev("message_delta", { type: "message_delta", delta: { stop_reason: "max_tokens" }, usage: { input_tokens: 12, output_tokens: 2 } }),
  ev("message_stop", { type: "message_stop" }),
];
const broken = anthropicSseError("The GPU node stopped responding in the middle of the stream. Retry the request.", "upstream_error", "req_1");

describe("the stream tap in the Anthropic dialect", () => {
  it("passes a Messages stream through byte for byte and learns its usage from message_start and message_delta", async () => {
    const tapped = tapSse(sourceOf(vllmStream), { stripUsage: true, dialect: "anthropic", broken });
    expect(await text(tapped.body)).toBe(vllmStream.join(""));
    const outcome = await tapped.done;
    expect(outcome).toMatchObject({ status: "ok", usage: { promptTokens: 12, completionTokens: 2, cachedPromptTokens: 0 }, deliveredChunks: 2, errorCode: null });
  });

  it("takes the last message_delta's output (cumulative) and keeps message_start's input when the delta omits it, with Anthropic's cache fields", async () => {
    const parts = [
      ev("message_start", { type: "message_start", message: { usage: { input_tokens: 5, cache_read_input_tokens: 100, cache_creation_input_tokens: 20, output_tokens: 1 } } }),
      ev("content_block_delta", { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "a" } }),
      ev("message_delta", { type: "message_delta", delta: {}, usage: { output_tokens: 3 } }),
      ev("message_delta", { type: "message_delta", delta: { stop_reason: "end_turn" }, usage: { output_tokens: 7 } }),
      ev("message_stop", { type: "message_stop" }),
    ];
    const outcome = await (async () => {
      const tapped = tapSse(sourceOf(parts), { stripUsage: false, dialect: "anthropic", broken });
      await text(tapped.body);
      return tapped.done;
    })();
    expect(outcome.usage).toEqual({ promptTokens: 125, completionTokens: 7, cachedPromptTokens: 100 });
  });

  it("ends a stream that broke off with an Anthropic error event (no [DONE]) and reports it failed, counting what was delivered", async () => {
    const tapped = tapSse(sourceOf(vllmStream.slice(0, 3), { failAtEnd: true }), { stripUsage: false, dialect: "anthropic", broken });
    const body = await text(tapped.body);
    expect(body.endsWith(broken)).toBe(true);
    expect(body).not.toContain("[DONE]");
    expect(broken).toMatch(/^event: error\ndata: \{"type":"error","error":\{"type":"api_error"/);
    const outcome = await tapped.done;
    // message_start said 0 output tokens; the one delta delivered is at least one.
    expect(outcome).toMatchObject({ status: "error", deliveredChunks: 1, usage: { promptTokens: 12, completionTokens: 1 } });
  });

  it("a stream that ends without message_stop is a failure too", async () => {
    const tapped = tapSse(sourceOf(vllmStream.slice(0, 6)), { stripUsage: false, dialect: "anthropic", broken });
    expect((await text(tapped.body)).endsWith(broken)).toBe(true);
    expect((await tapped.done).status).toBe("error");
  });

  it("adds nothing after the engine's own error event", async () => {
    const parts = [...vllmStream.slice(0, 3), ev("error", { type: "error", error: { type: "internal_error", message: "boom" } })];
    const tapped = tapSse(sourceOf(parts), { stripUsage: false, dialect: "anthropic", broken });
    expect(await text(tapped.body)).toBe(parts.join(""));
    expect((await tapped.done).status).toBe("error");
  });
});

describe("usage objects of every surface", () => {
  it("reads OpenAI chat, Responses and Anthropic usage into the same counts", () => {
    expect(parseUsage({ prompt_tokens: 10, completion_tokens: 4, prompt_tokens_details: { cached_tokens: 3 } })).toEqual({ promptTokens: 10, completionTokens: 4, cachedPromptTokens: 3 });
    expect(parseUsage({ input_tokens: 10, output_tokens: 4, input_tokens_details: { cached_tokens: 2 }, total_tokens: 14 })).toEqual({ promptTokens: 10, completionTokens: 4, cachedPromptTokens: 2 });
    expect(parseUsage({ input_tokens: 10, output_tokens: 4, cache_read_input_tokens: 6, cache_creation_input_tokens: 1 })).toEqual({ promptTokens: 17, completionTokens: 4, cachedPromptTokens: 6 });
  });

  it("finds a non-streamed Messages answer's usage at the end of its body", () => {
    const body = JSON.stringify({ id: "chatcmpl-1", type: "message", role: "assistant", content: [{ type: "text", text: 'a "usage" word' }], stop_reason: "end_turn", usage: { input_tokens: 9, output_tokens: 3 } });
    expect(usageFromTail(body)).toEqual({ promptTokens: 9, completionTokens: 3, cachedPromptTokens: 0 });
  });
});
