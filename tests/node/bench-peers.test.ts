import { afterEach, describe, expect, it } from "vitest";
import { nginxAvailable, startNginx, startNodeForwarder, startPortkey, type Peer } from "../../bench/lib/peers.ts";
import { nodeSecret, signedHeaders } from "../../bench/lib/signed.ts";
import { runWrk, wrkAvailable } from "../../bench/lib/wrk.ts";
import { startSimEngine, type SimEngine } from "../../backplane/src/sim/index.ts";
import { startBenchBackplane } from "../support/bench-backplane.ts";

const PATH = "/v1/chat/completions";
const MASTER_SECRET = "m".repeat(64);
const NODE_ID = "bench-node-1";

function chatBody(stream: boolean): string {
  return JSON.stringify({ model: "sim-llama-8b", stream, messages: [{ role: "user", content: "Say something." }] });
}

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close().catch(() => {});
});

function track<T extends { close(): Promise<void> }>(thing: T): T {
  closers.push(() => thing.close());
  return thing;
}

/** A fast engine (no delays, 16 tokens) and a paced one (20 ms between tokens) to see streaming. */
async function engines(): Promise<{ fast: SimEngine; paced: SimEngine }> {
  const fast = track(await startSimEngine({ ttftMs: 0, interTokenMs: 0, outputTokens: 16 }));
  const paced = track(await startSimEngine({ ttftMs: 0, interTokenMs: 20, outputTokens: 16 }));
  return { fast, paced };
}

/** A body without the fields that differ per request (`id`, `created`): JSON, or each SSE event's JSON. */
function normalized(text: string): unknown {
  const strip = (json: string): unknown => {
    if (json === "[DONE]") return json;
    const { id: _id, created: _created, ...rest } = JSON.parse(json) as Record<string, unknown>;
    return rest;
  };
  if (!text.startsWith("data: ")) return strip(text);
  expect(text.endsWith("\n\n")).toBe(true);
  return text
    .slice(0, -2)
    .split("\n\n")
    .map((event) => {
      expect(event.startsWith("data: ")).toBe(true);
      return strip(event.slice("data: ".length));
    });
}

/** POSTs a chat completion and reads the body, noting when the first and the last chunk arrived. */
async function post(baseUrl: string, body: string, headers: Record<string, string> = {}) {
  const started = performance.now();
  const res = await fetch(baseUrl + PATH, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });
  const decoder = new TextDecoder();
  let text = "";
  let firstMs = 0;
  let lastMs = 0;
  if (res.body) {
    for await (const chunk of res.body) {
      if (text === "") firstMs = performance.now() - started;
      lastMs = performance.now() - started;
      text += decoder.decode(chunk as Uint8Array, { stream: true });
    }
  }
  return { status: res.status, contentType: res.headers.get("content-type"), text, firstMs, lastMs };
}

/** Checks that `peer` answers like the engine behind it, and passes a stream through as it comes. */
async function expectTransparent(via: (engine: SimEngine) => Promise<{ url: string; headers?: Record<string, string> }>): Promise<void> {
  const { fast, paced } = await engines();
  const peer = await via(fast);
  for (const stream of [false, true]) {
    const direct = await post(fast.url, chatBody(stream));
    const proxied = await post(peer.url, chatBody(stream), peer.headers);
    expect(direct.status).toBe(200);
    expect(proxied.status).toBe(200);
    expect(proxied.contentType).toBe(direct.contentType);
    expect(normalized(proxied.text)).toEqual(normalized(direct.text));
  }
  // 16 tokens 20 ms apart: a buffering hop would deliver them all at once at the end.
  const pacedPeer = await via(paced);
  const stream = await post(pacedPeer.url, chatBody(true), pacedPeer.headers);
  expect(stream.status).toBe(200);
  expect(stream.text.endsWith("data: [DONE]\n\n")).toBe(true);
  expect(stream.lastMs - stream.firstMs).toBeGreaterThan(150);
}

describe("benchmark peers", () => {
  it.skipIf(!nginxAvailable())("nginx passes completions and streams through unchanged, event by event", async () => {
    await expectTransparent(async (engine) => track<Peer>(await startNginx({ upstream: engine.url })));
  });

  it("the bare Hono forwarder on Node passes completions and streams through unchanged, event by event", async () => {
    await expectTransparent(async (engine) => track<Peer>(await startNodeForwarder({ upstream: engine.url })));
  });

  it("Portkey, pointed at the engine by its headers, passes completions and streams through unchanged, event by event", async () => {
    const portkey = track(await startPortkey());
    expect(portkey.headersFor("http://127.0.0.1:1/")).toEqual({
      "x-portkey-provider": "openai",
      "x-portkey-custom-host": "http://127.0.0.1:1/v1",
      authorization: "Bearer sk-bench",
    });
    // One Portkey serves any engine: the engine is named per request.
    await expectTransparent((engine) => Promise.resolve({ url: portkey.url, headers: portkey.headersFor(engine.url) }));
  });

  it.skipIf(!nginxAvailable() || !wrkAvailable())("wrk drives load through nginx and reports throughput, latency and failed statuses", async () => {
    const { fast } = await engines();
    const nginx = track(await startNginx({ upstream: fast.url }));
    const ok = await runWrk({ url: nginx.url + PATH, method: "POST", headers: { "content-type": "application/json" }, body: chatBody(false), connections: 4, durationSec: 2 });
    expect(ok.requests).toBeGreaterThan(100);
    expect(ok.rps).toBeGreaterThan(0);
    expect(ok.durationSec).toBeGreaterThan(1.5);
    expect(ok.p50Ms).toBeGreaterThan(0);
    expect(ok.p50Ms).toBeLessThanOrEqual(ok.p90Ms);
    expect(ok.p90Ms).toBeLessThanOrEqual(ok.p99Ms);
    expect(ok.non2xx).toBe(0);
    expect(ok.statuses).toEqual({});
    expect(ok.socketErrors).toBe(0);
    // A body the engine refuses: every answer is a 400 and counted as such.
    const bad = await runWrk({ url: nginx.url + PATH, method: "POST", headers: { "content-type": "application/json" }, body: "{", connections: 2, durationSec: 1 });
    expect(bad.requests).toBeGreaterThan(0);
    expect(bad.non2xx).toBe(bad.requests);
    expect(Object.keys(bad.statuses)).toEqual(["400"]);
  });

  it("a backplane serves a request signed with signedHeaders and refuses an unsigned or stale one", async () => {
    const { fast } = await engines();
    // Started as the local stack starts a node (dev/nodes.ts), without a gateway: no heartbeats.
    const backplane = await startBenchBackplane({ masterSecret: MASTER_SECRET, nodeId: NODE_ID, engineUrl: fast.url });
    closers.push(() => backplane.stop());
    const url = backplane.url;

    const body = chatBody(false);
    const direct = await post(fast.url, body);
    const signed = await post(url, body, await signedHeaders({ masterSecret: MASTER_SECRET, nodeId: NODE_ID, path: PATH, body, requestId: "bench-1" }));
    expect(signed.status).toBe(200);
    expect(normalized(signed.text)).toEqual(normalized(direct.text));

    // The node's own secret signs the same way.
    const secret = await nodeSecret(MASTER_SECRET, NODE_ID);
    const stream = chatBody(true);
    const streamed = await post(url, stream, await signedHeaders({ secret, nodeId: NODE_ID, path: PATH, body: stream }));
    expect(streamed.status).toBe(200);
    expect(normalized(streamed.text)).toEqual(normalized((await post(fast.url, stream)).text));

    const unsigned = await post(url, body);
    expect(unsigned.status).toBe(401);
    expect(JSON.parse(unsigned.text)).toMatchObject({ error: { code: "unauthorized" } });
    const stale = await post(url, body, await signedHeaders({ secret, nodeId: NODE_ID, path: PATH, body, nowSeconds: Math.floor(Date.now() / 1000) - 120 }));
    expect(stale.status).toBe(401);
    expect(stale.text).toContain("stale");
    const otherBody = await post(url, chatBody(true), await signedHeaders({ secret, nodeId: NODE_ID, path: PATH, body }));
    expect(otherBody.status).toBe(401);
  });
});
