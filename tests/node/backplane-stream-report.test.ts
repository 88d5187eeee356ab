import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { sseEngineFailure } from "../../backplane/src/errors.ts";
import { StreamReports } from "../../backplane/src/proxy/reports.ts";
import { NODE_HEADER } from "../../schema/contracts/signing.ts";
import { STREAM_REPORT_HEADER, STREAM_REPORT_PATH, parseReportAnswer, type StreamReport } from "../../schema/contracts/stream-report.ts";
import { gatewayHeaders, TEST_NODE, useBackplane, waitUntil } from "../support/backplane-harness.ts";

const bp = useBackplane();
const PATH = "/v1/chat/completions";
const chat = {
  model: "sim-llama-8b",
  stream: true,
  stream_options: { include_usage: true },
  max_tokens: 6,
  messages: [{ role: "user", content: "hello there" }],
};
const HEX_TOKEN = /^[0-9a-f]{32}$/;

/** A streamed request signed as the gateway would, asking for a reported stream when `mode` is given. */
async function gatewayPost(baseUrl: string, body: unknown, mode: string | null, signal?: AbortSignal): Promise<Response> {
  const raw = JSON.stringify(body);
  const headers: Record<string, string> = { "content-type": "application/json", [NODE_HEADER]: TEST_NODE, ...(await gatewayHeaders(PATH, raw)) };
  if (mode !== null) headers[STREAM_REPORT_HEADER] = mode;
  return fetch(baseUrl + PATH, { method: "POST", headers, body: raw, signal });
}

/** The same request straight to the engine: what it sends when nothing is cut. */
async function engineBody(simUrl: string, body: unknown): Promise<string> {
  const res = await fetch(simUrl + PATH, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return res.text();
}

/** A body's SSE events (the text of each `data:` line), in order. */
function events(text: string): string[] {
  return text
    .split("\n\n")
    .filter((block) => block !== "")
    .map((block) => block.replace(/^data: /, ""));
}

/** Ids and timestamps differ between two answers; everything else must not. */
function normalise(text: string): string {
  return text.replace(/"id":"[^"]*"/g, '"id":"X"').replace(/"created":\d+/g, '"created":0');
}

const isUsageChunk = (event: string) => event.includes('"choices":[]') && event.includes('"usage"');
const contentEvents = (text: string) => events(text).filter((e) => e !== "[DONE]" && !isUsageChunk(e) && !e.startsWith('{"error"'));
/** Content events that deliver a token: all but each choice's opening chunk (role, no content), which the tap does not count. */
const tokenEvents = (text: string) => contentEvents(text).filter((e) => !e.includes('"delta":{"role":"assistant","content":""}'));

/** The usage the engine put in its usage chunk, in the report's shape. */
function usageOf(text: string): StreamReport["usage"] {
  const chunk = events(text).find(isUsageChunk);
  if (!chunk) return null;
  const usage = (JSON.parse(chunk) as { usage: { prompt_tokens: number; completion_tokens: number } }).usage;
  return { prompt_tokens: usage.prompt_tokens, completion_tokens: usage.completion_tokens, cached_tokens: 0 };
}

/** Asks the backplane for the reports of `tokens`, as the gateway does. */
function askReports(baseUrl: string, tokens: string[], signal?: AbortSignal): Promise<Response> {
  return fetch(`${baseUrl}${STREAM_REPORT_PATH}`, { method: "POST", body: JSON.stringify({ tokens }), headers: { "content-type": "application/json" }, signal });
}

/** The answer's report per token asked for (null: none). */
async function answerOf(res: Response, tokens: string[]): Promise<Map<string, StreamReport | null>> {
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toBe("application/json");
  const answer = parseReportAnswer(await res.json(), tokens);
  if (answer === null) throw new Error("not a report answer");
  return answer;
}

async function reportOf(baseUrl: string, token: string): Promise<StreamReport> {
  const report = (await answerOf(await askReports(baseUrl, [token]), [token])).get(token);
  if (!report) throw new Error("no report");
  return report;
}

function tokenOf(res: Response): string {
  const token = res.headers.get(STREAM_REPORT_HEADER);
  expect(token).toMatch(HEX_TOKEN);
  return token ?? "";
}

/**
 * An OpenAI-compatible engine that streams `writes` as separate chunks (10 ms apart), then ends the
 * response or cuts the connection: the framings and failures the simulator does not produce.
 */
async function scriptedEngine(writes: string[], then: "end" | "cut"): Promise<string> {
  const server = createServer((req, res) => {
    req.resume();
    if (req.url === "/v1/models") {
      res.writeHead(200, { "content-type": "application/json" });
      return void res.end(JSON.stringify({ object: "list", data: [{ id: "scripted", object: "model" }] }));
    }
    res.writeHead(200, { "content-type": "text/event-stream" });
    const next = (i: number) => {
      const chunk = writes[i];
      if (chunk === undefined) return void (then === "end" ? res.end() : res.destroy());
      res.write(chunk);
      setTimeout(() => next(i + 1), 10);
    };
    next(0);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  bp.defer(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** The simulated engine's abort counter for the chat model. */
async function engineAborts(simUrl: string): Promise<number> {
  const text = await (await fetch(`${simUrl}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith('vllm:request_success_total{model_name="sim-llama-8b",engine="0",finished_reason="abort"}'));
  return Number(line?.split(" ").at(-1) ?? Number.NaN);
}

describe("a reported stream", () => {
  it("strip-usage: sends a token, every content event and [DONE] without the usage chunk, and reports the engine's usage", async () => {
    const sim = await bp.sim();
    const daemon = await bp.daemon([{ kind: "sim", url: sim.url }]);
    const direct = await engineBody(sim.url, chat);
    const res = await gatewayPost(daemon.url, chat, "strip-usage");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const token = tokenOf(res);
    const text = await res.text();
    // Exactly the engine's bytes with the usage chunk's event cut out.
    const expected = events(direct).filter((e) => !isUsageChunk(e));
    expect(events(normalise(text))).toEqual(expected.map(normalise));
    expect(events(text).some(isUsageChunk)).toBe(false);
    expect(text.endsWith("data: [DONE]\n\n")).toBe(true);
    expect(contentEvents(text)).toHaveLength(7); // the role chunk and 6 tokens

    const report = await reportOf(daemon.url, token);
    expect(report).toEqual({ status: "ok", usage: usageOf(direct), delivered_chunks: 6, error_code: null });
    expect(report.usage?.completion_tokens).toBe(6);

    const metrics = await (await fetch(`${daemon.url}/metrics`)).text();
    expect(metrics).toContain('switchyard_backplane_stream_reports_total{event="issued"} 1');
    expect(metrics).toContain('switchyard_backplane_stream_reports_total{event="taken"} 1');
  });

  it("keep-usage: passes the usage chunk through byte for byte and reports the same usage", async () => {
    const sim = await bp.sim();
    const daemon = await bp.daemon([{ kind: "sim", url: sim.url }]);
    const direct = await engineBody(sim.url, chat);
    const res = await gatewayPost(daemon.url, chat, "keep-usage");
    const token = tokenOf(res);
    const text = await res.text();
    expect(normalise(text)).toBe(normalise(direct));
    expect(events(text).filter(isUsageChunk)).toHaveLength(1);
    expect(await reportOf(daemon.url, token)).toEqual({ status: "ok", usage: usageOf(text), delivered_chunks: 6, error_code: null });
  });

  it("passes a long stream intact to a gateway that reads slowly (the engine waits while its socket is full)", async () => {
    const sim = await bp.sim({ interTokenMs: 0, outputTokens: 100_000, models: [{ name: "sim-llama-8b", kind: "generate", maxModelLen: 100_000 }] });
    const daemon = await bp.daemon([{ kind: "sim", url: sim.url }]);
    const long = { ...chat, max_tokens: 20_000 };
    const direct = await engineBody(sim.url, long);
    const res = await gatewayPost(daemon.url, long, "strip-usage");
    const token = tokenOf(res);
    // 20 000 events, about 3 MB: more than the socket buffers hold while nothing is read, so the
    // backplane has to wait for drain (it did 6 times when this was written).
    await new Promise((resolve) => setTimeout(resolve, 300));
    const text = await res.text();
    expect(normalise(text)).toBe(normalise(events(direct).filter((e) => !isUsageChunk(e)).map((e) => `data: ${e}\n\n`).join("")));
    expect(await reportOf(daemon.url, token)).toEqual({ status: "ok", usage: usageOf(direct), delivered_chunks: 20_000, error_code: null });
  });

  it("answers a report asked for while the stream still runs once the stream has ended", async () => {
    const sim = await bp.sim({ interTokenMs: 20 });
    const daemon = await bp.daemon([{ kind: "sim", url: sim.url }]);
    const res = await gatewayPost(daemon.url, chat, "strip-usage");
    const headersAt = performance.now();
    let answeredAt = 0;
    const token = tokenOf(res);
    const pending = askReports(daemon.url, [token]).then((r) => {
      answeredAt = performance.now();
      return r;
    });
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    await new Promise((resolve) => setTimeout(resolve, 40));
    expect(answeredAt).toBe(0); // still waiting: the stream runs
    let text = "";
    const decoder = new TextDecoder();
    for (let r = await reader.read(); !r.done; r = await reader.read()) text += decoder.decode(r.value, { stream: true });
    const report = (await answerOf(await pending, [token])).get(token);
    // Six tokens 20 ms apart: the answer came at the end of the stream, not at once.
    expect(answeredAt - headersAt).toBeGreaterThan(80);
    expect(report).toMatchObject({ status: "ok", delivered_chunks: 6, error_code: null, usage: { completion_tokens: 6 } });
    expect(text).not.toContain('"choices":[]');
  });

  it("gives a report once, answers null alike for a used and an unknown token, and refuses a malformed ask", async () => {
    const sim = await bp.sim();
    const daemon = await bp.daemon([{ kind: "sim", url: sim.url }]);
    const first = await gatewayPost(daemon.url, chat, "keep-usage");
    const second = await gatewayPost(daemon.url, chat, "strip-usage");
    const [a, b] = [tokenOf(first), tokenOf(second)];
    await Promise.all([first.text(), second.text()]);
    // One ask for several streams, as the gateway batches them.
    const both = await answerOf(await askReports(daemon.url, [a, b]), [a, b]);
    expect(both.get(a)).toMatchObject({ status: "ok" });
    expect(both.get(b)).toMatchObject({ status: "ok" });
    const unknown = "0".repeat(32);
    const again = await answerOf(await askReports(daemon.url, [a, unknown]), [a, unknown]);
    expect([...again.values()]).toEqual([null, null]);
    for (const body of [{ tokens: ["ABCDEF".repeat(5) + "AB"] }, { tokens: ["../health"] }, { tokens: [] }, { tokens: Array.from({ length: 257 }, () => unknown) }, { token: a }, "junk"]) {
      const res = await fetch(`${daemon.url}${STREAM_REPORT_PATH}`, { method: "POST", body: JSON.stringify(body) });
      expect(res.status, JSON.stringify(body).slice(0, 40)).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("bad_request");
    }
    const get = await fetch(`${daemon.url}${STREAM_REPORT_PATH}`);
    expect(get.status).toBe(405);
    expect(((await get.json()) as { error: { code: string } }).error.code).toBe("method_not_allowed");
  });

  it("ends the stream with an error event and [DONE] and reports an error when the engine dies mid-stream", async () => {
    const sim = await bp.sim();
    const daemon = await bp.daemon([{ kind: "sim", url: sim.url }]);
    const res = await gatewayPost(daemon.url, { ...chat, sim_fault: "drop_mid_stream", sim_fault_after: 2 }, "strip-usage");
    expect(res.status).toBe(200);
    const token = tokenOf(res);
    const text = await res.text();
    expect(text).toMatch(/\n\ndata: \{"error":\{[^\n]*"code":"engine_stream_failed"\}\}\n\ndata: \[DONE\]\n\n$/);
    const delivered = tokenEvents(text).length;
    expect(delivered).toBeGreaterThan(0);
    expect(await reportOf(daemon.url, token)).toEqual({ status: "error", usage: null, delivered_chunks: delivered, error_code: "upstream_stream_error" });
  });

  it("passes the engine's own error event and [DONE] on without adding one, and reports an error", async () => {
    const sim = await bp.sim();
    const daemon = await bp.daemon([{ kind: "sim", url: sim.url }]);
    const res = await gatewayPost(daemon.url, { ...chat, sim_fault: "error_mid_stream", sim_fault_after: 2 }, "strip-usage");
    const token = tokenOf(res);
    const tail = events(await res.text()).slice(-2);
    expect(tail[0]).toMatch(/^\{"error": \{.*sim_fault=error_mid_stream/);
    expect(tail[1]).toBe("[DONE]");
    expect(await reportOf(daemon.url, token)).toMatchObject({ status: "error", usage: null, error_code: "upstream_stream_error" });
  });

  it("reports cancelled and stops the engine when the gateway hangs up mid-stream", async () => {
    const sim = await bp.sim({ interTokenMs: 30 });
    const daemon = await bp.daemon([{ kind: "sim", url: sim.url }]);
    const gateway = new AbortController();
    const res = await gatewayPost(daemon.url, { ...chat, max_tokens: 200 }, "strip-usage", gateway.signal);
    const token = tokenOf(res);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    let received = "";
    while (tokenEvents(received).length < 3) {
      const r = await reader.read();
      if (r.done) break;
      received += new TextDecoder().decode(r.value);
    }
    gateway.abort();
    const report = await reportOf(daemon.url, token);
    expect(report.status).toBe("cancelled");
    expect(report.error_code).toBe("client_cancelled");
    expect(report.usage).toBeNull();
    expect(report.delivered_chunks).toBeGreaterThanOrEqual(3);
    await waitUntil(async () => (await engineAborts(sim.url)) === 1, 1_000, "engine abort");
    expect(daemon.pool.reports()[0]?.inFlight).toBe(0);
  });

  it("answers as before, without a token, when the gateway does not ask (or asks for an unknown mode, or not for a stream)", async () => {
    const sim = await bp.sim();
    const daemon = await bp.daemon([{ kind: "sim", url: sim.url }]);
    const direct = await engineBody(sim.url, chat);
    for (const mode of [null, "bogus"]) {
      const res = await gatewayPost(daemon.url, chat, mode);
      expect(res.status).toBe(200);
      expect(res.headers.has(STREAM_REPORT_HEADER)).toBe(false);
      const text = await res.text();
      expect(normalise(text)).toBe(normalise(direct));
      expect(events(text).filter(isUsageChunk)).toHaveLength(1);
    }
    const plain = await gatewayPost(daemon.url, { ...chat, stream: false, stream_options: undefined }, "strip-usage");
    expect(plain.status).toBe(200);
    expect(plain.headers.has(STREAM_REPORT_HEADER)).toBe(false);
    expect(((await plain.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(6);
    const metrics = await (await fetch(`${daemon.url}/metrics`)).text();
    expect(metrics).not.toContain("switchyard_backplane_stream_reports_total{");
  });
});

describe("a reported stream from an engine that breaks off oddly", () => {
  const scripted = { ...chat, model: "scripted" };
  const FAILURE = sseEngineFailure("The inference engine failed in the middle of the stream.");

  it("closes an event cut in the middle with a blank line before the error event and [DONE]", async () => {
    const first = 'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n';
    const cut = 'data: {"choices":[{"index":0,"del';
    const daemon = await bp.daemon([{ kind: "openai", url: await scriptedEngine([first, cut], "cut") }]);
    const res = await gatewayPost(daemon.url, scripted, "strip-usage");
    const token = tokenOf(res);
    expect(await res.text()).toBe(`${first}${cut}\n\n${FAILURE}`);
    // The cut event reached the gateway too, so it counts as delivered.
    expect(await reportOf(daemon.url, token)).toEqual({ status: "error", usage: null, delivered_chunks: 2, error_code: "upstream_stream_error" });
  });

  it("cuts a CRLF-framed usage chunk out and adds the error event when the engine ends without [DONE]", async () => {
    const content = 'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\r\n\r\n';
    const usage = 'data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":4}}}\r\n\r\n';
    const daemon = await bp.daemon([{ kind: "openai", url: await scriptedEngine([content, usage], "end") }]);
    const res = await gatewayPost(daemon.url, scripted, "strip-usage");
    const token = tokenOf(res);
    expect(await res.text()).toBe(content + FAILURE);
    expect(await reportOf(daemon.url, token)).toEqual({
      status: "error",
      usage: { prompt_tokens: 9, completion_tokens: 1, cached_tokens: 4 },
      delivered_chunks: 1,
      error_code: "upstream_stream_error",
    });
  });
});

describe("the report store", () => {
  const ok: StreamReport = { status: "ok", usage: { prompt_tokens: 5, completion_tokens: 6, cached_tokens: 0 }, delivered_chunks: 7, error_code: null };
  let store: StreamReports;
  afterEach(() => store.close());

  it("issues 32-hex tokens and gives a finished report once", async () => {
    store = new StreamReports();
    const report = store.open();
    expect(report?.token).toMatch(HEX_TOKEN);
    report?.finish(ok);
    report?.finish({ ...ok, status: "error" }); // the first report stands
    expect(await store.take(report?.token ?? "")).toEqual(ok);
    expect(await store.take(report?.token ?? "")).toBeNull();
    expect(await store.take("f".repeat(32))).toBeNull();
    expect(store.size).toBe(0);
  });

  it("makes a take wait until the stream finishes; an aborted take leaves the report for a later one", async () => {
    store = new StreamReports();
    const report = store.open();
    const token = report?.token ?? "";
    const gone = new AbortController();
    const abandoned = store.take(token, gone.signal);
    gone.abort();
    expect(await abandoned).toBeNull();
    const waiting = store.take(token);
    let settled = false;
    void waiting.then(() => (settled = true));
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(settled).toBe(false);
    report?.finish(ok);
    expect(await waiting).toEqual(ok);
    expect(store.size).toBe(0);
  });

  it("forgets a finished report nobody took after its TTL", async () => {
    const seen: string[] = [];
    store = new StreamReports({ ttlMs: 30, onEvent: (event) => seen.push(event) });
    const report = store.open();
    report?.finish(ok);
    expect(store.size).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(store.size).toBe(0);
    expect(await store.take(report?.token ?? "")).toBeNull();
    expect(seen).toEqual(["issued", "expired"]);
  });

  it("refuses to open a report when full, until one is taken", async () => {
    const seen: string[] = [];
    store = new StreamReports({ maxEntries: 2, onEvent: (event) => seen.push(event) });
    const first = store.open();
    expect(store.open()).not.toBeNull();
    expect(store.open()).toBeNull();
    first?.finish(ok);
    expect(store.open()).toBeNull(); // finished but not taken: still held
    await store.take(first?.token ?? "");
    expect(store.open()).not.toBeNull();
    expect(seen).toEqual(["issued", "issued", "refused", "refused", "taken", "issued"]);
  });

  it("on close resolves waiting takes with null, drops every report and opens no more; closing twice is harmless", async () => {
    store = new StreamReports();
    const running = store.open();
    const finished = store.open();
    finished?.finish(ok);
    const waiting = store.take(running?.token ?? "");
    store.close();
    store.close();
    expect(await waiting).toBeNull();
    expect(await store.take(finished?.token ?? "")).toBeNull();
    running?.finish(ok);
    expect(store.size).toBe(0);
    expect(store.open()).toBeNull();
  });
});
