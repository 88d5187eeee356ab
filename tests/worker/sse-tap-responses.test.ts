import { describe, expect, it } from "vitest";
import { tapSse } from "../../worker/src/proxy/sse-tap.ts";
import { sourceOf, textOf as text } from "./sse-streams.ts";
import { responsesSseError } from "../../worker/src/responses/routes.ts";

let seq = 0;
const ev = (type: string, data: Record<string, unknown>) => `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq++, ...data })}\n\n`;
const usage = { input_tokens: 12, input_tokens_details: { cached_tokens: 4 }, output_tokens: 2, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 14 };
const response = { id: "resp_1", object: "response", status: "completed", output: [], usage };
/** A Responses stream (api-surfaces.md §1.5), shortened. */
const stream = [
  ev("response.created", { response: { ...response, status: "in_progress", usage: null } }),
  ev("response.output_item.added", { output_index: 0, item: { id: "msg_1", type: "message", role: "assistant", status: "in_progress", content: [] } }),
  ev("response.output_text.delta", { item_id: "msg_1", output_index: 0, content_index: 0, delta: "Hel", logprobs: [] }),
  ev("response.output_text.delta", { item_id: "msg_1", output_index: 0, content_index: 0, delta: "lo", logprobs: [] }),
  ev("response.output_text.done", { item_id: "msg_1", output_index: 0, content_index: 0, text: "Hello", logprobs: [] }),
  ev("response.completed", { response }),
];
const broken = responsesSseError("The GPU node stopped responding in the middle of the stream. Retry the request.", "upstream_error");

describe("the stream tap in the Responses dialect", () => {
  it("passes the events through byte for byte and takes the usage of response.completed", async () => {
    const tapped = tapSse(sourceOf(stream), { stripUsage: true, dialect: "responses", broken });
    expect(await text(tapped.body)).toBe(stream.join(""));
    expect(await tapped.done).toMatchObject({ status: "ok", usage: { promptTokens: 12, completionTokens: 2, cachedPromptTokens: 4 }, deliveredChunks: 2 });
  });

  it("ends a stream cut before response.completed with a Responses error event (no [DONE]) and meters the deltas delivered", async () => {
    const tapped = tapSse(sourceOf(stream.slice(0, 4), { failAtEnd: true }), { stripUsage: false, dialect: "responses", broken });
    const body = await text(tapped.body);
    expect(body.endsWith(broken)).toBe(true);
    expect(broken).toMatch(/^event: error\ndata: \{"type":"error","code":"upstream_error","message":/);
    expect(body).not.toContain("[DONE]");
    expect(await tapped.done).toMatchObject({ status: "error", usage: null, deliveredChunks: 2 });
  });

  it("counts response.failed as a failure with its usage, and adds nothing after the engine's own error event", async () => {
    const failed = [...stream.slice(0, 3), ev("response.failed", { response: { ...response, status: "failed", usage: { ...usage, output_tokens: 1 } } })];
    const one = tapSse(sourceOf(failed), { stripUsage: false, dialect: "responses", broken });
    expect(await text(one.body)).toBe(failed.join(""));
    expect(await one.done).toMatchObject({ status: "error", usage: { completionTokens: 1 } });
    const errored = [...stream.slice(0, 3), ev("error", { code: "server_error", message: "boom", param: null })];
    const two = tapSse(sourceOf(errored), { stripUsage: false, dialect: "responses", broken });
    expect(await text(two.body)).toBe(errored.join(""));
    expect((await two.done).status).toBe("error");
  });
});
