import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { EngineConfig } from "../../backplane/src/config.ts";
import { createAdapter } from "../../backplane/src/engines/adapters.ts";
import type { EngineLoad } from "../../backplane/src/engines/types.ts";
import { type SimEngine, startSimEngine } from "../../backplane/src/sim/index.ts";
import { type FakeOllama, startFakeOllama } from "../support/fake-ollama.ts";

function engine(partial: Partial<EngineConfig> & Pick<EngineConfig, "url">): EngineConfig {
  return { id: "e0", kind: "vllm", models: [], maxConcurrency: 8, maxQueue: 8, apiKey: null, ...partial };
}

async function waitFor<T>(read: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`condition not reached; last value ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const signal = () => AbortSignal.timeout(5000);

let sims: SimEngine[] = [];
let servers: Server[] = [];
let ollama: FakeOllama | null = null;
afterEach(async () => {
  await Promise.all(sims.map((s) => s.close()));
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  await ollama?.close();
  sims = [];
  servers = [];
  ollama = null;
});

async function sim(options: Parameters<typeof startSimEngine>[0] = {}): Promise<SimEngine> {
  const s = await startSimEngine({ port: 0, ttftMs: 0, interTokenMs: 0, ...options });
  sims.push(s);
  return s;
}

/** A loopback server answering fixed bodies per path (an engine variant the simulator does not play). */
async function tinyServer(routes: Record<string, { status?: number; body: string }>): Promise<string> {
  const server = createServer((req, res) => {
    const route = routes[req.url ?? "/"];
    res.writeHead(route?.status ?? (route ? 200 : 404), { "content-type": "text/plain" });
    res.end(route?.body ?? "");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  servers.push(server);
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe("vLLM adapter against the simulated engine", () => {
  it("reports a live engine healthy with the models of /v1/models", async () => {
    const s = await sim({ models: [{ name: "llama-70b", kind: "generate", maxModelLen: 32768 }, { name: "bge", kind: "embed", maxModelLen: 512 }] });
    const result = await createAdapter(engine({ url: s.url, kind: "sim" })).probe(signal());
    expect(result.healthy).toBe(true);
    expect(result.error).toBeNull();
    expect(result.models).toEqual(["llama-70b", "bge"]);
    expect(result.latencyMs).toBeGreaterThanOrEqual(0);
  });

  it("sends the api key to /v1/models, and reports a wrong key as unhealthy with the 401", async () => {
    const s = await sim({ apiKey: "sekret" });
    expect((await createAdapter(engine({ url: s.url, apiKey: "sekret" })).probe(signal())).healthy).toBe(true);
    const wrong = await createAdapter(engine({ url: s.url, apiKey: "nope" })).probe(signal());
    expect(wrong).toMatchObject({ healthy: false, models: null, error: "GET /v1/models answered 401" });
  });

  it("reports a closed engine unhealthy with the connection error", async () => {
    const s = await sim();
    const adapter = createAdapter(engine({ url: s.url }));
    await s.close();
    const result = await adapter.probe(signal());
    expect(result.healthy).toBe(false);
    expect(result.models).toBeNull();
    expect(result.error).toMatch(/ECONNREFUSED/);
  });

  it("reports 503 from /health (vLLM's dead engine core) as unhealthy", async () => {
    const url = await tinyServer({ "/health": { status: 503, body: "" }, "/v1/models": { body: '{"data":[{"id":"m"}]}' } });
    const result = await createAdapter(engine({ url })).probe(signal());
    expect(result).toMatchObject({ healthy: false, error: "GET /health answered 503" });
  });

  it("gives up on an engine that does not answer within timeoutMs", async () => {
    const server = createServer(() => {
      // Never answers: an engine stuck in a long GC or a dead proxy.
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    servers.push(server);
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const result = await createAdapter(engine({ url }), { timeoutMs: 50 }).probe(signal());
    expect(result).toMatchObject({ healthy: false, error: "no answer within 50 ms" });
    server.closeAllConnections();
  });

  it("scrapes load that moves while a slow stream runs, then the recent TTFT of the finished request", async () => {
    const s = await sim({ interTokenMs: 20 });
    const adapter = createAdapter(engine({ url: s.url, kind: "sim", models: ["sim-llama-8b"] }));
    const idle = await adapter.scrapeLoad(signal());
    expect(idle).toEqual({ running: 0, waiting: 0, kvCacheUsage: 0, recentTtftMs: null, promptTokensTotal: 0, generationTokensTotal: 0 });

    const controller = new AbortController();
    const res = await fetch(`${s.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: [{ role: "user", content: "Hello" }], max_tokens: 500, ignore_eos: true, stream: true, sim_ttft_ms: 60 }),
      signal: controller.signal,
    });
    const busy = await waitFor(() => adapter.scrapeLoad(signal()), (l: EngineLoad) => (l.generationTokensTotal ?? 0) > 0);
    expect(busy.running).toBe(1);
    expect(busy.waiting).toBe(0);
    expect(busy.kvCacheUsage).toBeGreaterThan(0);
    expect(busy.promptTokensTotal).toBe(9);
    expect(busy.recentTtftMs).toBeGreaterThanOrEqual(60);
    controller.abort();
    await res.body?.cancel().catch(() => undefined);

    const after = await waitFor(() => adapter.scrapeLoad(signal()), (l: EngineLoad) => l.running === 0);
    expect(after.kvCacheUsage).toBe(0);
    // No request got its first token since the previous scrape.
    expect(after.recentTtftMs).toBeNull();
  });

  it("counts only this engine's models when the engine labels several", async () => {
    const s = await sim({ interTokenMs: 20 });
    const embedOnly = createAdapter(engine({ url: s.url, models: ["sim-embed"] }));
    const all = createAdapter(engine({ url: s.url }));
    const controller = new AbortController();
    const res = await fetch(`${s.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "sim-llama-8b", prompt: "Hi", max_tokens: 500, ignore_eos: true, stream: true }),
      signal: controller.signal,
    });
    await waitFor(() => all.scrapeLoad(signal()), (l: EngineLoad) => l.running === 1);
    expect((await embedOnly.scrapeLoad(signal())).running).toBe(0);
    controller.abort();
    await res.body?.cancel().catch(() => undefined);
  });

  it("falls back to vllm:gpu_cache_usage_perc when kv_cache_usage_perc is absent, taking the fullest engine", async () => {
    const metrics = [
      "# TYPE vllm:gpu_cache_usage_perc gauge",
      'vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.25',
      'vllm:gpu_cache_usage_perc{engine="1",model_name="m"} 0.5',
      'vllm:num_requests_running{engine="0",model_name="m"} 2.0',
      'vllm:num_requests_running{engine="1",model_name="m"} 3.0',
      'vllm:num_requests_waiting{engine="0",model_name="m"} 1.0',
    ].join("\n");
    const url = await tinyServer({ "/metrics": { body: metrics } });
    const load = await createAdapter(engine({ url, models: ["m"] })).scrapeLoad(signal());
    expect(load).toEqual({ running: 5, waiting: 1, kvCacheUsage: 0.5, recentTtftMs: null, promptTokensTotal: null, generationTokensTotal: null });
  });

  it("fails the scrape when /metrics answers an error status", async () => {
    const url = await tinyServer({});
    await expect(createAdapter(engine({ url })).scrapeLoad(signal())).rejects.toThrow("GET /metrics answered 404");
  });
});

describe("OpenAI-compatible adapter", () => {
  it("is healthy with the models of /v1/models and has no load metrics", async () => {
    const s = await sim({ apiKey: "k" });
    const adapter = createAdapter(engine({ url: s.url, kind: "openai", apiKey: "k" }));
    expect(await adapter.probe(signal())).toMatchObject({ healthy: true, error: null, models: ["sim-llama-8b", "sim-embed"] });
    expect(await adapter.scrapeLoad(signal())).toEqual({ running: null, waiting: null, kvCacheUsage: null, recentTtftMs: null, promptTokensTotal: null, generationTokensTotal: null });
  });

  it("is unhealthy when /v1/models answers 200 without a data list", async () => {
    const url = await tinyServer({ "/v1/models": { body: '{"models":[]}' } });
    const result = await createAdapter(engine({ url, kind: "openai" })).probe(signal());
    expect(result).toMatchObject({ healthy: false, error: "GET /v1/models did not return a `data` list" });
  });
});

describe("Ollama adapter", () => {
  it("is healthy via /api/version with the model names of /api/tags", async () => {
    ollama = await startFakeOllama({ models: [{ name: "llama3.2:3b" }, { name: "qwen3:8b" }] });
    const result = await createAdapter(engine({ url: ollama.url, kind: "ollama" })).probe(signal());
    expect(result).toMatchObject({ healthy: true, error: null, models: ["llama3.2:3b", "qwen3:8b"] });
    expect(ollama.requests.map((r) => r.path)).toEqual(["/api/version", "/api/tags"]);
  });

  it("falls back to / on servers without /api/version", async () => {
    const url = await tinyServer({ "/": { body: "Ollama is running" }, "/api/tags": { body: '{"models":[{"name":"phi3:mini"}]}' } });
    expect(await createAdapter(engine({ url, kind: "ollama" })).probe(signal())).toMatchObject({ healthy: true, models: ["phi3:mini"] });
  });

  it("is unhealthy once Ollama is gone", async () => {
    ollama = await startFakeOllama();
    const adapter = createAdapter(engine({ url: ollama.url, kind: "ollama" }));
    await ollama.close();
    expect((await adapter.probe(signal())).healthy).toBe(false);
  });
});
