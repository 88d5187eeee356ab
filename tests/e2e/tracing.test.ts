/**
 * End to end: traces (docs/tracing.md) from the real local stack (wrangler dev + backplane +
 * simulated engine) to an OTLP/HTTP JSON receiver on loopback, driven by the official `openai` client.
 */
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Stack } from "../../dev/stack.ts";
import { startTestStack, type TestStack } from "../support/e2e-stack.ts";
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from "../support/otlp-receiver.ts";

const messages = [{ role: "user" as const, content: "Trace me through the switchyard." }];
const CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN = "b7ad6b7169203331";
/** Spans the gateway's exports carry (its service.name) and the backplane's. */
const GATEWAY = "switchyard-gateway";
const BACKPLANE = "switchyard-backplane";

function one(spans: ReceivedSpan[], service: string, name: string): ReceivedSpan {
  const found = spans.filter((s) => s.service === service && s.name === name);
  expect(found, `${service} ${name}`).toHaveLength(1);
  return found[0] as ReceivedSpan;
}

async function startTracedStack(name: string, receiver: OtlpReceiver, ratio: string, backplaneEnv: Record<string, string> = {}): Promise<TestStack> {
  return startTestStack(name, {
    simArgs: ["--ttft-ms", "5", "--inter-token-ms", "5"],
    workerVars: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_TRACES_SAMPLER_RATIO: ratio },
    backplaneEnv: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_TRACES_SAMPLER_RATIO: ratio, ...backplaneEnv },
  });
}

describe("tracing with every trace sampled (ratio 1)", () => {
  let receiver: OtlpReceiver;
  let started: TestStack;
  let stack: Stack;
  let client: OpenAI;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    started = await startTracedStack("tracing1", receiver, "1");
    stack = started.stack;
    client = new OpenAI({ baseURL: `${stack.gatewayUrl}/v1`, apiKey: stack.apiKey, maxRetries: 0 });
  }, 120_000);

  afterAll(async () => {
    await started?.close();
    await receiver?.close();
  });

  it("continues the client's trace through the gateway and the backplane, each span under the right parent", async () => {
    const traceparent = `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01`;
    const { data: stream, response } = await client.chat.completions
      .create({ model: "sim-llama-8b", messages, max_tokens: 6, stream: true }, { headers: { traceparent, tracestate: "vendor=abc" } })
      .withResponse();
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
    expect(text.length).toBeGreaterThan(0);
    const requestId = response.headers.get("x-request-id");

    await receiver.waitFor((spans) => spans.some((s) => s.traceId === CLIENT_TRACE && s.name === "gateway request") && spans.some((s) => s.traceId === CLIENT_TRACE && s.name === "backplane request"));
    const spans = receiver.trace(CLIENT_TRACE);

    const root = one(spans, GATEWAY, "gateway request");
    expect(root).toMatchObject({ parentSpanId: CLIENT_SPAN, traceState: "vendor=abc", kind: 2, status: { code: 0 } });
    expect(root.attributes).toMatchObject({
      "http.route": "/v1/chat/completions",
      "http.response.status_code": 200,
      "gen_ai.request.model": "sim-llama-8b",
      "switchyard.tenant_id": "ten_demo",
      "switchyard.request_id": requestId,
      "gen_ai.usage.output_tokens": 6,
    });
    for (const name of ["routing", "admission", "stream"]) expect(one(spans, GATEWAY, name).parentSpanId).toBe(root.spanId);
    expect(one(spans, GATEWAY, "stream").attributes).toMatchObject({ "switchyard.stream.status": "ok", "gen_ai.usage.output_tokens": 6 });
    const attempt = one(spans, GATEWAY, "upstream attempt");
    expect(attempt).toMatchObject({ parentSpanId: root.spanId, kind: 3 });
    expect(attempt.attributes).toMatchObject({ "switchyard.node.id": stack.nodeId, "cloud.region": "local", "http.response.status_code": 200, "switchyard.attempt": 1 });

    // The backplane continued the trace under the gateway's attempt, and passed it on to the engine.
    const node = one(spans, BACKPLANE, "backplane request");
    expect(node).toMatchObject({ parentSpanId: attempt.spanId, traceState: "vendor=abc", kind: 2 });
    expect(node.attributes).toMatchObject({ "switchyard.request_id": requestId, "gen_ai.request.model": "sim-llama-8b", "http.response.status_code": 200 });
    const engine = one(spans, BACKPLANE, "engine call");
    expect(engine).toMatchObject({ parentSpanId: node.spanId, kind: 3, status: { code: 0 } });
    expect(engine.attributes).toMatchObject({ "switchyard.engine.id": "sim-0", "http.response.status_code": 200 });
    // Every span ends after it starts, and the gateway's root covers the stream.
    expect(BigInt(root.endTimeUnixNano)).toBeGreaterThanOrEqual(BigInt(one(spans, GATEWAY, "stream").endTimeUnixNano));
  });

  it("starts a new trace when the client's traceparent is invalid", async () => {
    const invalid = `00-${CLIENT_TRACE.toUpperCase()}-${CLIENT_SPAN}-01`;
    const { response } = await client.chat.completions.create({ model: "sim-llama-8b", messages, max_tokens: 2 }, { headers: { traceparent: invalid, tracestate: "vendor=dropped" } }).withResponse();
    const requestId = response.headers.get("x-request-id");
    await receiver.waitFor((spans) => spans.some((s) => s.name === "gateway request" && s.attributes["switchyard.request_id"] === requestId));
    const root = receiver.spans.find((s) => s.name === "gateway request" && s.attributes["switchyard.request_id"] === requestId) as ReceivedSpan;
    expect(root.traceId).not.toBe(CLIENT_TRACE.toLowerCase());
    expect(root.parentSpanId).toBeNull();
    expect(root.traceState).toBeNull();
    // The backplane's spans are in that new trace.
    await receiver.waitFor((spans) => spans.some((s) => s.traceId === root.traceId && s.name === "backplane request"));
    const attempt = one(receiver.trace(root.traceId), GATEWAY, "upstream attempt");
    expect(one(receiver.trace(root.traceId), BACKPLANE, "backplane request").parentSpanId).toBe(attempt.spanId);
  });

  it("links the latency histograms to exported traces: exemplars in the OpenMetrics scrape (docs/operations.md)", async () => {
    const { response } = await client.chat.completions.create({ model: "sim-llama-8b", messages, max_tokens: 2 }).withResponse();
    const requestId = response.headers.get("x-request-id");
    await receiver.waitFor((spans) => spans.some((s) => s.name === "gateway request" && s.attributes["switchyard.request_id"] === requestId));
    const traceId = (receiver.spans.find((s) => s.name === "gateway request" && s.attributes["switchyard.request_id"] === requestId) as ReceivedSpan).traceId;
    const scrape = async (accept: string) => {
      const res = await fetch(`${stack.gatewayUrl}/admin/metrics`, { headers: { authorization: `Bearer ${stack.adminToken}`, accept } });
      return { type: res.headers.get("content-type") ?? "", text: await res.text() };
    };
    // The isolate's exemplar reaches Redis with a later request's end writes (or this scrape's own flush).
    let om = await scrape("application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5");
    for (let i = 0; i < 40 && !om.text.includes(`trace_id="${traceId}"`); i++) {
      await new Promise((r) => setTimeout(r, 250));
      om = await scrape("application/openmetrics-text; version=1.0.0");
    }
    expect(om.type).toContain("application/openmetrics-text");
    expect(om.text.endsWith("# EOF\n")).toBe(true);
    // A counter's family is named without _total in OpenMetrics; its samples keep it.
    expect(om.text).toContain("# TYPE switchyard_requests counter");
    const line = om.text.split("\n").find((l) => l.includes(`trace_id="${traceId}"`)) ?? "";
    expect(line).toMatch(new RegExp(`^switchyard_request_duration_seconds_bucket\\{route="chat",le="[^"]+"\\} \\d+ # \\{trace_id="${traceId}"\\} [0-9.]+ [0-9.]+$`));
    // The plain Prometheus format has no exemplars.
    const plain = await scrape("text/plain");
    expect(plain.type).toContain("text/plain");
    expect(plain.text).not.toContain("trace_id=");
    expect(plain.text).toContain("# TYPE switchyard_requests_total counter");
  });
});

describe("tracing with no trace sampled (ratio 0)", () => {
  let receiver: OtlpReceiver;
  let started: TestStack;
  let stack: Stack;
  let client: OpenAI;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    // A stalled engine fails a try in 400 ms, and the backplane gives up after one retry 50 ms later.
    started = await startTracedStack("tracing0", receiver, "0", { BACKPLANE_REQUEST_TIMEOUT_MS: "400", BACKPLANE_RETRY_BACKOFF_MS: "50" });
    stack = started.stack;
    client = new OpenAI({ baseURL: `${stack.gatewayUrl}/v1`, apiKey: stack.apiKey, maxRetries: 0 });
  }, 120_000);

  afterAll(async () => {
    await started?.close();
    await receiver?.close();
  });

  it("exports nothing for a successful request, from the gateway or the backplane", async () => {
    const unsampled = `00-${CLIENT_TRACE}-${CLIENT_SPAN}-00`;
    await client.chat.completions.create({ model: "sim-llama-8b", messages, max_tokens: 2 });
    await client.chat.completions.create({ model: "sim-llama-8b", messages, max_tokens: 2 }, { headers: { traceparent: unsampled } });
    // Exports go out within a few ms of a request's end; give them far longer than that.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(receiver.spans).toEqual([]);
  });

  it("always exports a failed request's trace, from the gateway and the backplane", async () => {
    const traceparent = `00-${CLIENT_TRACE}-${CLIENT_SPAN}-00`;
    stack.pauseNode(stack.nodeId);
    try {
      await expect(client.chat.completions.create({ model: "sim-llama-8b", messages, max_tokens: 2 }, { headers: { traceparent } })).rejects.toMatchObject({ status: 503 });
    } finally {
      stack.resumeNode(stack.nodeId);
    }
    await receiver.waitFor((spans) => spans.some((s) => s.name === "gateway request") && spans.some((s) => s.name === "backplane request"));
    const spans = receiver.trace(CLIENT_TRACE);
    const root = one(spans, GATEWAY, "gateway request");
    expect(root).toMatchObject({ parentSpanId: CLIENT_SPAN, status: { code: 2 } });
    expect(root.attributes).toMatchObject({ "http.response.status_code": 503 });
    const attempt = one(spans, GATEWAY, "upstream attempt");
    expect(attempt).toMatchObject({ status: { code: 2 } });
    expect(attempt.attributes).toMatchObject({ "http.response.status_code": 503, "switchyard.failover.reason": "status_503" });
    const node = one(spans, BACKPLANE, "backplane request");
    expect(node).toMatchObject({ parentSpanId: attempt.spanId, status: { code: 2 } });
    const engineCalls = spans.filter((s) => s.service === BACKPLANE && s.name === "engine call");
    expect(engineCalls.length).toBeGreaterThan(0);
    for (const call of engineCalls) expect(call).toMatchObject({ parentSpanId: node.spanId, status: { code: 2 } });
  });
});
