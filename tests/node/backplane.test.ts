import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BackplaneServer } from "../../backplane/src/server.ts";
import { ConfigError, parseConfig } from "../../backplane/src/config.ts";
import { startSimEngine, type SimEngine } from "../../backplane/src/sim/index.ts";
import { NODE_HEADER, importSigningKey, signRequest } from "../../schema/contracts/signing.ts";
import { freePort } from "../../dev/ports.ts";

const SECRET = "a".repeat(64);
const NODE_ID = "gpu-test-1";
let sim: SimEngine;
let backplane: BackplaneServer;
let url: string;

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
  backplane = new BackplaneServer(parseConfig({ nodeId: NODE_ID, secret: SECRET, host: "127.0.0.1", port: 0, engineUrl: sim.url }));
  url = await backplane.listen();
});

afterEach(async () => {
  await backplane.close();
  await sim.close();
});

describe("signature checks", () => {
  async function expectRejected(res: Response) {
    expect(res.status).toBe(401);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("unauthorized");
    expect(sim.stats.requests).toBe(0);
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
    expect(sim.stats.requests).toBe(1);
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

  it("answers 502 in OpenAI's shape when the engine is unreachable", async () => {
    await sim.close();
    const res = await signedFetch("/v1/chat/completions", chat);
    expect(res.status).toBe(502);
    const body = (await res.json()) as { error: { code: string } };
    expect(body.error.code).toBe("engine_unavailable");
  });
});

describe("health", () => {
  it("reports ready while the engine answers and unhealthy (503) when it does not", async () => {
    const ready = await fetch(`${url}/health`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: "ready", node_id: NODE_ID, engine: { healthy: true } });
    await sim.close();
    const down = await fetch(`${url}/health`);
    expect(down.status).toBe(503);
    expect(await down.json()).toMatchObject({ status: "unhealthy", engine: { healthy: false } });
  });
});

describe("configuration", () => {
  const valid = { nodeId: "n1", secret: SECRET, engineUrl: "http://127.0.0.1:8000" };

  it("fills defaults for a minimal configuration", () => {
    expect(parseConfig(valid)).toMatchObject({ host: "0.0.0.0", port: 8443, engineTimeoutMs: 30_000, tlsCertFile: null });
  });

  it("names the setting that is invalid", () => {
    expect(() => parseConfig({ ...valid, secret: "short" })).toThrow(/--secret \/ BACKPLANE_SECRET/);
    expect(() => parseConfig({ ...valid, engineUrl: "ftp://x" })).toThrow(/--engine-url/);
    expect(() => parseConfig({ ...valid, port: "99999" })).toThrow(/--port/);
    expect(() => parseConfig({ ...valid, tlsCertFile: "/tmp/cert.pem" })).toThrow(ConfigError);
  });

  it("refuses to start on a port that is taken, with the error surfaced", async () => {
    const port = await freePort();
    const first = new BackplaneServer(parseConfig({ ...valid, host: "127.0.0.1", port }));
    await first.listen();
    const second = new BackplaneServer(parseConfig({ ...valid, host: "127.0.0.1", port }));
    await expect(second.listen()).rejects.toThrow(/EADDRINUSE/);
    await first.close();
    await first.close();
  });
});
