import { describe, expect, it } from "vitest";
import { parseStreamReport, type StreamReport } from "../../schema/contracts/stream-report.ts";
import { pipeReported, type ReportFetcher } from "../../worker/src/proxy/reported-stream.ts";
import { sseData } from "./helpers.ts";

// Reported streams (schema/contracts/stream-report.ts) as the gateway passes them on: bytes piped
// natively, the outcome taken from the node's report, and the gateway's own ending when the node's
// connection breaks. The end-to-end path (a real backplane) is in proxy.test.ts.

const encoder = new TextEncoder();
const EVENTS = ['data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n', 'data: {"choices":[{"index":0,"delta":{"content":" there"}}]}\n\n', "data: [DONE]\n\n"];

const OK_REPORT: StreamReport = { status: "ok", usage: { prompt_tokens: 7, completion_tokens: 2, cached_tokens: 1 }, delivered_chunks: 2, error_code: null };

/** A node's body: the given chunks, then an end (or an error); records a cancel. */
function nodeBody(chunks: string[], opts: { failAfter?: boolean; hold?: boolean } = {}) {
  const state = { cancelled: false };
  let i = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const chunk = chunks[i++];
      if (chunk !== undefined) return controller.enqueue(encoder.encode(chunk));
      if (opts.hold) return new Promise<void>(() => {}); // a node that keeps the stream open
      if (opts.failAfter) controller.error(new Error("connection reset"));
      else controller.close();
    },
    cancel() {
      state.cancelled = true;
    },
  });
  return { body, state };
}

/** A report fetcher that answers `report` (an Error rejects); counts its calls. */
function fetcher(report: StreamReport | null | Error): { fetch: ReportFetcher; calls: number } {
  const f = {
    calls: 0,
    fetch: () => {
      f.calls++;
      return report instanceof Error ? Promise.reject(report) : Promise.resolve(report);
    },
  };
  return f;
}

describe("a reported stream", () => {
  it("reaches the client byte for byte and is metered from the node's report", async () => {
    const node = nodeBody(EVENTS);
    const report = fetcher(OK_REPORT);
    const missing: string[] = [];
    const piped = pipeReported(node.body, report.fetch, { answeredAt: 1234, onMissing: (why) => missing.push(why) });
    expect(await new Response(piped.body).text()).toBe(EVENTS.join(""));
    expect(await piped.done).toEqual({ status: "ok", usage: { promptTokens: 7, completionTokens: 2, cachedPromptTokens: 1 }, firstByteAt: 1234, deliveredChunks: 2, errorCode: null });
    expect(missing).toEqual([]);
    expect(report.calls).toBe(1);
  });

  it("tells the node's load is over when the bytes end, before the report is in (least-load routing)", async () => {
    const order: string[] = [];
    const slowReport = () => new Promise<StreamReport | null>((resolve) => setTimeout(() => resolve(OK_REPORT), 20)).finally(() => order.push("report"));
    const piped = pipeReported(nodeBody(EVENTS).body, slowReport, { answeredAt: 1, onEnded: () => order.push("ended") });
    await new Response(piped.body).text();
    await piped.done;
    expect(order).toEqual(["ended", "report"]);
  });

  it("ends with an error event and [DONE] when the node's connection breaks, and is metered as an error", async () => {
    const node = nodeBody(EVENTS.slice(0, 1), { failAfter: true });
    const report = fetcher(new Error("node gone"));
    const missing: string[] = [];
    const piped = pipeReported(node.body, report.fetch, { answeredAt: 1, onMissing: (why) => missing.push(why) });
    const events = sseData(await new Response(piped.body).text());
    expect(events[0]).toContain('"Hi"');
    expect(JSON.parse(events[1] ?? "")).toMatchObject({ error: { code: "upstream_error" } });
    expect(events.at(-1)).toBe("[DONE]");
    expect(await piped.done).toMatchObject({ status: "error", usage: null, errorCode: "upstream_stream_error", firstByteAt: 1 });
    expect(missing).toEqual(["the node's connection broke mid-stream"]);
  });

  it("is metered from the prompt estimate, and says so, when the node gives no report", async () => {
    const missing: string[] = [];
    const piped = pipeReported(nodeBody(EVENTS).body, fetcher(null).fetch, { answeredAt: 1, onMissing: (why) => missing.push(why) });
    expect(await new Response(piped.body).text()).toBe(EVENTS.join(""));
    expect(await piped.done).toMatchObject({ status: "ok", usage: null, deliveredChunks: 0, errorCode: null });
    expect(missing).toEqual(["the node gave no report"]);
  });

  it("keeps the node's error status when the gateway had to end the stream but the report came", async () => {
    const node = nodeBody(EVENTS.slice(0, 1), { failAfter: true });
    const piped = pipeReported(node.body, fetcher(OK_REPORT).fetch, { answeredAt: 1 });
    await new Response(piped.body).text();
    expect(await piped.done).toMatchObject({ status: "error", errorCode: "upstream_stream_error", usage: { completionTokens: 2 } });
  });

  it("stops the node's stream at once when the client goes away, and is metered as cancelled from the report", async () => {
    const node = nodeBody(EVENTS.slice(0, 1), { hold: true });
    const cancelled: StreamReport = { status: "cancelled", usage: null, delivered_chunks: 1, error_code: "client_cancelled" };
    const clientGone = new AbortController();
    const piped = pipeReported(node.body, fetcher(cancelled).fetch, { answeredAt: 1, clientGone: clientGone.signal });
    const reader = piped.body.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toContain('"Hi"');
    clientGone.abort();
    expect(await piped.done).toMatchObject({ status: "cancelled", deliveredChunks: 1, errorCode: "client_cancelled" });
    expect(node.state.cancelled).toBe(true);
  });

  it("stops the node's stream at its next chunk when the client cancelled the body", async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const state = { cancelled: false };
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent++ > 0) await gate;
        controller.enqueue(encoder.encode(EVENTS[0] ?? ""));
      },
      cancel() {
        state.cancelled = true;
      },
    });
    const piped = pipeReported(body, fetcher(null).fetch, { answeredAt: 1 });
    const reader = piped.body.getReader();
    await reader.read();
    await reader.cancel();
    release();
    expect(await piped.done).toMatchObject({ status: "cancelled", usage: null, errorCode: "client_cancelled" });
    expect(state.cancelled).toBe(true);
  });

  it("takes only a well-formed report from the node (anything else is metered as a missing report)", () => {
    expect(parseStreamReport(OK_REPORT)).toEqual(OK_REPORT);
    expect(parseStreamReport({ ...OK_REPORT, usage: null, status: "cancelled", error_code: "client_cancelled" })).not.toBeNull();
    for (const bad of [
      null,
      "ok",
      { ...OK_REPORT, status: "fine" },
      { ...OK_REPORT, delivered_chunks: -1 },
      { ...OK_REPORT, delivered_chunks: 1.5 },
      { ...OK_REPORT, usage: { prompt_tokens: 1, completion_tokens: "2", cached_tokens: 0 } },
      { ...OK_REPORT, usage: { prompt_tokens: 1, completion_tokens: 2 } },
      { ...OK_REPORT, error_code: "x".repeat(101) },
      { ...OK_REPORT, error_code: 5 },
    ]) {
      expect(parseStreamReport(bad)).toBeNull();
    }
  });
});
