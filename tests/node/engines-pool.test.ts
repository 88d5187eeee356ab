import { afterEach, describe, expect, it } from "vitest";
import { engineReportSchema } from "../../schema/contracts/heartbeat.ts";
import type { EngineConfig } from "../../backplane/src/config.ts";
import { EnginePool, type PoolSettings } from "../../backplane/src/engines/pool.ts";
import { type SimEngine, startSimEngine } from "../../backplane/src/sim/index.ts";

const MODEL = "sim-llama-8b";

let sims: SimEngine[] = [];
let pools: EnginePool[] = [];
afterEach(async () => {
  await Promise.all(pools.map((p) => p.close()));
  await Promise.all(sims.map((s) => s.close()));
  sims = [];
  pools = [];
});

async function sim(options: Parameters<typeof startSimEngine>[0] = {}): Promise<SimEngine> {
  const s = await startSimEngine({ port: 0, ttftMs: 0, interTokenMs: 0, ...options });
  sims.push(s);
  return s;
}

function engine(id: string, url: string, partial: Partial<EngineConfig> = {}): EngineConfig {
  return { id, kind: "sim", url, models: [], maxConcurrency: 4, maxQueue: 4, apiKey: null, ...partial };
}

interface LogLine {
  event: string;
  fields: Record<string, unknown>;
}

function pool(engines: EngineConfig[], settings: Partial<PoolSettings> = {}) {
  const logs: LogLine[] = [];
  const changes = { count: 0 };
  const p = new EnginePool({
    engines,
    settings: { healthIntervalMs: 60_000, loadIntervalMs: 60_000, breakerFailures: 3, breakerOpenMs: 60_000, probeTimeoutMs: 1000, ...settings },
    log: (event, fields) => logs.push({ event, fields }),
    onChange: () => changes.count++,
  });
  pools.push(p);
  return { pool: p, logs, changes };
}

async function waitFor(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("condition not reached");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const ids = (p: EnginePool, model = MODEL) => p.candidates(model).map((rt) => rt.id);

describe("engine pool", () => {
  it("probes every engine before start resolves and learns models from the engines", async () => {
    const a = await sim({ models: [{ name: "llama-70b", kind: "generate", maxModelLen: 32768 }] });
    const b = await sim();
    const { pool: p, logs, changes } = pool([engine("a", a.url), engine("b", b.url, { models: ["pinned"] })]);
    await p.start();
    expect(p.status()).toBe("ready");
    expect(p.models()).toEqual(["llama-70b", "pinned"]);
    expect(p.serves("llama-70b")).toBe(true);
    expect(p.serves("sim-embed")).toBe(false);
    expect(p.get("a")?.models).toEqual(["llama-70b"]);
    expect(changes.count).toBe(2);
    expect(logs.filter((l) => l.event === "engine.health").map((l) => [l.fields.engine, l.fields.healthy])).toEqual([["a", true], ["b", true]]);
    const reports = p.reports();
    for (const report of reports) engineReportSchema.parse(report);
    expect(reports[0]).toEqual({
      id: "a", kind: "sim", models: ["llama-70b"], healthy: true, circuit: "closed", inFlight: 0, queued: 0, maxConcurrency: 4,
      running: 0, waiting: 0, kvCacheUsage: 0, recentTtftMs: null, promptTokensTotal: 0, generationTokensTotal: 0, adapters: [],
    });
  });

  it("orders candidates least-loaded first by backplane slots, then by the engine's own reported load", async () => {
    const a = await sim({ interTokenMs: 20 });
    const b = await sim({ interTokenMs: 20 });
    const { pool: p } = pool([engine("a", a.url), engine("b", b.url)], { loadIntervalMs: 20 });
    await p.start();
    expect(ids(p)).toEqual(["a", "b"]);

    const slot = await p.get("a")?.limiter.tryAcquire();
    expect(slot?.ok).toBe(true);
    expect(ids(p)).toEqual(["b", "a"]);
    if (slot?.ok) slot.release();
    expect(ids(p)).toEqual(["a", "b"]);

    // Traffic reaching engine a around the backplane shows up through its /metrics.
    const controller = new AbortController();
    const res = await fetch(`${a.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: [{ role: "user", content: "Hi" }], max_tokens: 500, ignore_eos: true, stream: true }),
      signal: controller.signal,
    });
    await waitFor(() => p.get("a")?.load.running === 1);
    expect(ids(p)).toEqual(["b", "a"]);
    expect(p.reports()[0]?.running).toBe(1);
    controller.abort();
    await res.body?.cancel().catch(() => undefined);
    await waitFor(() => p.get("a")?.load.running === 0);
    expect(ids(p)).toEqual(["a", "b"]);
  });

  it("drops a dead engine from the candidates (degraded), and takes it back once it restarts on the same port", async () => {
    const a = await sim();
    const b = await sim();
    const { pool: p, changes } = pool([engine("a", a.url), engine("b", b.url)], { healthIntervalMs: 30 });
    await p.start();
    const port = a.port;
    await a.close();
    await p.probeNow("a");
    expect(p.status()).toBe("degraded");
    expect(ids(p)).toEqual(["b"]);
    expect(p.reports()[0]).toMatchObject({ id: "a", healthy: false, running: null });
    expect(p.get("a")?.lastProbe?.error).toMatch(/ECONNREFUSED/);
    const changesWhileDown = changes.count;

    sims.push(await startSimEngine({ port, ttftMs: 0, interTokenMs: 0 }));
    await waitFor(() => p.status() === "ready");
    expect(ids(p)).toEqual(["a", "b"]);
    expect(changes.count).toBe(changesWhileDown + 1);
  });

  it("is unhealthy when no engine can take requests", async () => {
    const a = await sim();
    const { pool: p } = pool([engine("a", a.url)]);
    await p.start();
    await a.close();
    await p.probeNow("a");
    expect(p.status()).toBe("unhealthy");
    expect(p.models()).toEqual([]);
    expect(p.serves(MODEL)).toBe(true);
  });

  it("opens an engine's circuit after N recorded failures and closes it after one good probe once openMs passed", async () => {
    const a = await sim();
    const b = await sim();
    const { pool: p, logs } = pool([engine("a", a.url), engine("b", b.url)], { breakerFailures: 3, breakerOpenMs: 150 });
    await p.start();
    p.recordResult("a", false);
    p.recordResult("a", false);
    expect(ids(p)).toEqual(["a", "b"]);
    p.recordResult("a", false);
    expect(p.reports()[0]?.circuit).toBe("open");
    expect(ids(p)).toEqual(["b"]);
    expect(p.status()).toBe("degraded");
    expect(p.models()).toEqual(["sim-embed", MODEL]);

    // healthIntervalMs is a minute: only the prompt half_open probe can close it this soon.
    await waitFor(() => p.reports()[0]?.circuit === "closed");
    expect(p.status()).toBe("ready");
    expect(ids(p)).toEqual(["a", "b"]);
    expect(logs.filter((l) => l.event === "engine.circuit").map((l) => l.fields.to)).toEqual(["open", "half_open", "closed"]);
  });

  it("re-opens the circuit when the deciding probe fails", async () => {
    const a = await sim();
    const { pool: p, logs } = pool([engine("a", a.url)], { breakerFailures: 1, breakerOpenMs: 80 });
    await p.start();
    await a.close();
    p.recordResult("a", false);
    await waitFor(() => logs.filter((l) => l.event === "engine.circuit").length >= 3);
    expect(logs.filter((l) => l.event === "engine.circuit").slice(0, 3).map((l) => l.fields.to)).toEqual(["open", "half_open", "open"]);
    expect(p.get("a")?.lastProbe?.healthy).toBe(false);
    expect(p.status()).toBe("unhealthy");
  });

  it("resets the failure count on a success, and ignores unknown engines", async () => {
    const a = await sim();
    const { pool: p } = pool([engine("a", a.url)], { breakerFailures: 2 });
    await p.start();
    p.recordResult("a", false);
    p.recordResult("a", true);
    p.recordResult("a", false);
    p.recordResult("nope", false);
    expect(p.reports()[0]?.circuit).toBe("closed");
    expect(await p.probeNow("nope")).toBeNull();
  });

  it("can be closed twice and stops probing", async () => {
    const a = await sim();
    const { pool: p, logs } = pool([engine("a", a.url)], { healthIntervalMs: 20 });
    await p.start();
    await p.close();
    await p.close();
    const seen = logs.length;
    await a.close();
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(logs.length).toBe(seen);
    expect(p.status()).toBe("ready");
  });
});
