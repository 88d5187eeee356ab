import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../../backplane/src/config.ts";
import { startDaemon, type Daemon } from "../../backplane/src/daemon.ts";
import { startSimEngine, type SimEngine } from "../../backplane/src/sim/index.ts";
import { NODE_HEADER, importSigningKey, signRequest } from "../../schema/contracts/signing.ts";
import { freePort } from "../../dev/ports.ts";

const SECRET = "a".repeat(64);
const NODE_ID = "gpu-test-1";
let sim: SimEngine;
let backplane: Daemon;
let url: string;
let baseline = 0;
const engineRequests = () => sim.stats.requests - baseline;

async function signedFetch(path: string, body: unknown, opts: { secret?: string; nowSeconds?: number; node?: string } = {}) {
  const raw = JSON.stringify(body);
  const key = await importSigningKey(opts.secret ?? SECRET);
  const headers = await signRequest(key, "POST", path, raw, opts.nowSeconds);
  return fetch(url + path, {
    method: "POST",
    headers: { "content-type": "application/json", [NODE_HEADER]: opts.node ?? NODE_ID, ...headers },
    body: raw,
  });
}

const chat = { model: "sim-llama-8b", messages: [{ role: "user", content: "hello there" }], max_tokens: 6 };

beforeEach(async () => {
  sim = await startSimEngine({ port: 0, ttftMs: 5, interTokenMs: 15 });
  backplane = await startDaemon(
    parseConfig({ nodeId: NODE_ID, region: "test", secret: SECRET, port: 0, engines: [{ kind: "sim", url: sim.url }], retryBackoffMs: [50], healthIntervalMs: 60_000, logLevel: "error" }),
  );
  url = backplane.url;
  // The pool's start-up probe asked the engine for its models; count only what tests send.
  baseline = sim.stats.requests;
});

afterEach(async () => {
  await backplane.close();
  await sim.close();
});

describe("metrics", () => {
  it("serves Prometheus text with the backplane's counters and the engine's load gauges", async () => {
    await (await signedFetch("/v1/chat/completions", chat)).arrayBuffer();
    const text = await (await fetch(`${url}/metrics`)).text();
    expect(text).toContain('switchyard_backplane_requests_total{engine="sim-0",outcome="ok"} 1');
    expect(text).toMatch(/switchyard_backplane_request_duration_seconds_count\{engine="sim-0"\} 1/);
    expect(text).toContain('switchyard_engine_healthy{engine="sim-0",kind="sim"} 1');
    expect(text).toContain('switchyard_backplane_max_concurrency{engine="sim-0",kind="sim"} 64');
    expect(text).toContain("# TYPE switchyard_backplane_first_byte_seconds histogram");
  });
});

describe("signature checks", () => {
  async function expectRejected(res: Response) {
    expect(res.status).toBe(401);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("unauthorized");
    expect(engineRequests()).toBe(0);
    return body.error.message;
  }

  it("rejects an unsigned request with 401 without touching the engine", async () => {
    const res = await fetch(`${url}/v1/chat/completions`, { method: "POST", body: JSON.stringify(chat) });
    expect(await expectRejected(res)).toContain("missing");
  });

  it("rejects a request signed with another secret", async () => {
    expect(await expectRejected(await signedFetch("/v1/chat/completions", chat, { secret: "b".repeat(64) }))).toContain("mismatch");
  });

  it("rejects a request signed more than 60 s ago or ahead of the node clock", async () => {
    const now = Math.floor(Date.now() / 1000);
    expect(await expectRejected(await signedFetch("/v1/chat/completions", chat, { nowSeconds: now - 75 }))).toContain("stale");
    expect(await expectRejected(await signedFetch("/v1/chat/completions", chat, { nowSeconds: now + 75 }))).toContain("stale");
  });

  it("rejects a request meant for another node", async () => {
    await expectRejected(await signedFetch("/v1/chat/completions", chat, { node: "gpu-other" }));
  });

  it("refuses a captured request replayed at once and 5 s later, while fresh requests go through", async () => {
    const raw = JSON.stringify(chat);
    const captured = { "content-type": "application/json", [NODE_HEADER]: NODE_ID, ...(await signRequest(await importSigningKey(SECRET), "POST", "/v1/chat/completions", raw)) };
    const send = () => fetch(`${url}/v1/chat/completions`, { method: "POST", headers: captured, body: raw });
    const first = await send();
    expect(first.status).toBe(200);
    await first.arrayBuffer();
    const replayNow = await send();
    expect(replayNow.status).toBe(401);
    expect(((await replayNow.json()) as { error: { code: string; message: string } }).error.message).toContain("replayed");
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    const replayLater = await send();
    expect(replayLater.status).toBe(401);
    expect(((await replayLater.json()) as { error: { code: string; message: string } }).error.message).toContain("replayed");
    expect(engineRequests()).toBe(1);
    const fresh = await signedFetch("/v1/chat/completions", chat);
    expect(fresh.status).toBe(200);
    await fresh.arrayBuffer();
    expect(engineRequests()).toBe(2);
  }, 15_000);

  it("refuses a request signed with the old v1 scheme, without a nonce", async () => {
    const raw = JSON.stringify(chat);
    const headers = await signRequest(await importSigningKey(SECRET), "POST", "/v1/chat/completions", raw);
    const { "x-switchyard-nonce": _nonce, ...withoutNonce } = headers;
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", [NODE_HEADER]: NODE_ID, ...withoutNonce, "x-switchyard-signature": headers["x-switchyard-signature"].replace("v2=", "v1=") },
      body: raw,
    });
    expect(await expectRejected(res)).toContain("outdated");
  });

  it("rejects a signed body that was altered in transit", async () => {
    const key = await importSigningKey(SECRET);
    const headers = await signRequest(key, "POST", "/v1/chat/completions", JSON.stringify(chat));
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify({ ...chat, max_tokens: 4000 }),
    });
    await expectRejected(res);
  });
});

describe("proxying", () => {
  it("forwards a signed request to the engine and returns its answer", async () => {
    const res = await signedFetch("/v1/chat/completions", chat);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { object: string; usage: { completion_tokens: number } };
    expect(body.object).toBe("chat.completion");
    expect(body.usage.completion_tokens).toBe(6);
    expect(engineRequests()).toBe(1);
  });

  it("streams tokens as the engine emits them, not at the end", async () => {
    const res = await signedFetch("/v1/chat/completions", { ...chat, stream: true });
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const arrivals: number[] = [];
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (value.length > 0) arrivals.push(performance.now());
    }
    // 6 tokens 15 ms apart: the reads must be spread over most of that time, not arrive at once.
    expect(arrivals.length).toBeGreaterThanOrEqual(4);
    expect((arrivals.at(-1) ?? 0) - (arrivals[0] ?? 0)).toBeGreaterThan(50);
  });

  it("ends the stream with an in-band error and [DONE] when the engine dies mid-stream", async () => {
    const res = await signedFetch("/v1/chat/completions", { ...chat, stream: true, sim_fault: "drop_mid_stream", sim_fault_after: 2 });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toMatch(/data: \{"error":\{[^\n]*"code":"engine_stream_failed"\}\}\n\ndata: \[DONE\]\n\n$/);
  });

  it("answers 503 with Retry-After in OpenAI's shape when the engine is unreachable, so the gateway can go elsewhere", async () => {
    await sim.close();
    const res = await signedFetch("/v1/chat/completions", chat);
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("5");
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("engine_unavailable");
  });

  it("answers 404 for a model no engine on the node serves", async () => {
    const res = await signedFetch("/v1/chat/completions", { ...chat, model: "other-model" });
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("model_not_found");
    expect(engineRequests()).toBe(0);
  });
});

describe("health", () => {
  it("reports ready while the engine answers and unhealthy (503) when it does not", async () => {
    const ready = await fetch(`${url}/health`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: "ready", node_id: NODE_ID, engines: [{ id: "sim-0", healthy: true, models: ["sim-llama-8b", "sim-embed"] }] });
    await sim.close();
    await backplane.pool.probeNow("sim-0");
    const down = await fetch(`${url}/health`);
    expect(down.status).toBe(503);
    expect(await down.json()).toMatchObject({ status: "unhealthy", engines: [{ healthy: false }] });
  });
});

describe("configuration", () => {
  const valid = { nodeId: "n1", region: "eu-1", secret: SECRET, engines: "kind=vllm,url=http://127.0.0.1:8000,model=llama" };

  it("fills the documented defaults for a minimal configuration", () => {
    expect(parseConfig(valid)).toMatchObject({
      host: "127.0.0.1",
      port: 8443,
      publicUrl: "http://127.0.0.1:8443",
      gatewayUrl: null,
      healthIntervalMs: 30_000,
      heartbeatIntervalMs: 5_000,
      firstByteTimeoutMs: 30_000,
      retryBackoffMs: [1000, 2000, 4000],
      breakerFailures: 5,
      breakerOpenMs: 60_000,
      drainGraceMs: 30_000,
      logLevel: "info",
      engines: [{ id: "vllm-0", kind: "vllm", url: "http://127.0.0.1:8000", models: ["llama"], maxConcurrency: 64, maxQueue: 256, apiKey: null }],
      spot: { aws: false, gcp: false, azure: false, awsMetadataUrl: "http://169.254.169.254" },
    });
  });

  it("reads several engines from ';'-separated specs with repeated models", () => {
    const config = parseConfig({ ...valid, engines: "kind=vllm,url=http://127.0.0.1:8000,model=a,model=b,max-concurrency=8;kind=ollama,id=ol,url=http://127.0.0.1:11434" });
    expect(config.engines.map((e) => [e.id, e.kind, e.models, e.maxConcurrency])).toEqual([
      ["vllm-0", "vllm", ["a", "b"], 8],
      ["ol", "ollama", [], 64],
    ]);
  });

  it("names the setting that is invalid", () => {
    expect(() => parseConfig({ ...valid, secret: "short" })).toThrow(/--secret \/ BACKPLANE_SECRET/);
    expect(() => parseConfig({ ...valid, engines: "kind=vllm,url=ftp://x" })).toThrow(/--engine \/ BACKPLANE_ENGINES/);
    expect(() => parseConfig({ ...valid, engines: "kind=tpu,url=http://x" })).toThrow(/--engine/);
    expect(() => parseConfig({ ...valid, engines: "" })).toThrow(/at least one engine/);
    expect(() => parseConfig({ ...valid, port: "99999" })).toThrow(/--port/);
    expect(() => parseConfig({ ...valid, region: undefined })).toThrow(/--region \/ BACKPLANE_REGION: is required/);
    expect(() => parseConfig({ ...valid, retryBackoffMs: "1000,soon" })).toThrow(/--retry-backoff-ms/);
    expect(() => parseConfig({ ...valid, tlsCertFile: "/tmp/cert.pem" })).toThrow(ConfigError);
  });

  it("refuses plain HTTP on a public address unless explicitly allowed", () => {
    expect(() => parseConfig({ ...valid, host: "0.0.0.0" })).toThrow(/--allow-insecure-http/);
    expect(parseConfig({ ...valid, host: "0.0.0.0", allowInsecureHttp: "true" }).allowInsecureHttp).toBe(true);
    expect(parseConfig({ ...valid, host: "0.0.0.0", tlsCertFile: "/c.pem", tlsKeyFile: "/k.pem" }).publicUrl).toBe("https://127.0.0.1:8443");
  });

  it("refuses to start on a port that is taken, with the error surfaced", async () => {
    const port = await freePort();
    const config = parseConfig({ ...valid, engines: [{ kind: "sim", url: sim.url }], port, logLevel: "error" });
    const first = await startDaemon(config);
    await expect(startDaemon(config)).rejects.toThrow(/EADDRINUSE/);
    await first.close();
    await first.close();
  });
});
