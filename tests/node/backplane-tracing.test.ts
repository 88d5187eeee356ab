import { createServer, request, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { gatewayHeaders, signedPost, TEST_NODE, useBackplane } from "../support/backplane-harness.ts";
import { startOtlpReceiver, type OtlpReceiver } from "../support/otlp-receiver.ts";
import { NODE_HEADER } from "../../schema/contracts/signing.ts";

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const GATEWAY_SPAN = "00f067aa0ba902b7";

/**
 * A loopback pass-through in front of the simulated engine that keeps the headers of every request
 * it forwards: what the engine was sent, which the simulator itself does not expose.
 */
async function recordingProxy(target: string): Promise<{ url: string; seen: IncomingHttpHeaders[]; close(): Promise<void> }> {
  const seen: IncomingHttpHeaders[] = [];
  const server = createServer((req, res) => {
    seen.push(req.headers);
    const upstream = request(new URL(req.url ?? "/", target), { method: req.method, headers: req.headers }, (engineRes) => {
      res.writeHead(engineRes.statusCode ?? 502, engineRes.headers);
      engineRes.pipe(res);
    });
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

const chat = { model: "sim-llama-8b", messages: [{ role: "user", content: "hi" }], max_tokens: 3 };

describe("backplane tracing", () => {
  const bp = useBackplane();
  let receiver: OtlpReceiver | null = null;
  afterEach(async () => {
    await receiver?.close();
    receiver = null;
  });

  async function tracedNode(ratio: string) {
    receiver = await startOtlpReceiver();
    const sim = await bp.sim();
    const proxy = await recordingProxy(sim.url);
    bp.defer(() => proxy.close());
    const daemon = await bp.daemon([`kind=sim,id=sim-0,url=${proxy.url}`], { otelEndpoint: receiver.url, otelSamplerRatio: ratio, otelServiceName: "bp-test", otelHeaders: "authorization=Bearer%20k" });
    return { daemon, proxy, receiver };
  }

  it("continues the gateway's trace and hands the engine call's span to the engine in traceparent", async () => {
    const { daemon, proxy, receiver } = await tracedNode("0");
    const raw = JSON.stringify(chat);
    const res = await fetch(`${daemon.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", [NODE_HEADER]: TEST_NODE, "x-request-id": "req_traced", traceparent: `00-${TRACE}-${GATEWAY_SPAN}-01`, tracestate: "gw=1", ...(await gatewayHeaders("/v1/chat/completions", raw)) },
      body: raw,
    });
    expect(res.status).toBe(200);
    await res.json();

    await receiver.waitFor((spans) => spans.length >= 2);
    const root = receiver.spans.find((s) => s.name === "backplane request");
    const engine = receiver.spans.find((s) => s.name === "engine call");
    expect(root).toMatchObject({ service: "bp-test", traceId: TRACE, parentSpanId: GATEWAY_SPAN, traceState: "gw=1", kind: 2, status: { code: 0 } });
    expect(root?.attributes).toMatchObject({ "switchyard.request_id": "req_traced", "gen_ai.request.model": "sim-llama-8b", "http.response.status_code": 200 });
    expect(engine).toMatchObject({ traceId: TRACE, parentSpanId: root?.spanId, kind: 3 });
    expect(engine?.attributes).toMatchObject({ "switchyard.engine.id": "sim-0", "http.response.status_code": 200 });
    expect(receiver.requests[0]?.headers.authorization).toBe("Bearer k");
    // The engine got the trace, with the engine call as the parent and the gateway's sampled flag.
    const chatCall = proxy.seen.find((h) => h.traceparent !== undefined);
    expect(chatCall?.traceparent).toBe(`00-${TRACE}-${engine?.spanId}-01`);
    expect(chatCall?.tracestate).toBe("gw=1");
  });

  it("starts its own trace for an invalid traceparent, and exports nothing for an unsampled success", async () => {
    const { daemon, proxy, receiver } = await tracedNode("0");
    const raw = JSON.stringify(chat);
    const res = await fetch(`${daemon.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", [NODE_HEADER]: TEST_NODE, traceparent: `00-${TRACE}-${GATEWAY_SPAN}-1`, ...(await gatewayHeaders("/v1/chat/completions", raw)) },
      body: raw,
    });
    expect(res.status).toBe(200);
    await res.json();
    const sent = proxy.seen.find((h) => h.traceparent !== undefined)?.traceparent;
    expect(sent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    expect(sent?.slice(3, 35)).not.toBe(TRACE);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(receiver.spans).toEqual([]);
    await daemon.close();
    expect(receiver.spans).toEqual([]);
  });

  it("sends nothing to the engine when tracing is off", async () => {
    const sim = await bp.sim();
    const proxy = await recordingProxy(sim.url);
    bp.defer(() => proxy.close());
    const daemon = await bp.daemon([`kind=sim,id=sim-0,url=${proxy.url}`]);
    const res = await signedPost(daemon.url, "/v1/chat/completions", chat);
    expect(res.status).toBe(200);
    await res.json();
    expect(proxy.seen.some((h) => h.traceparent !== undefined)).toBe(false);
  });
});
