import { describe, expect, it } from "vitest";
import { signedPost, useBackplane, waitUntil } from "../support/backplane-harness.ts";

const chat = { model: "sim-llama-8b", messages: [{ role: "user", content: "hello there" }], max_tokens: 4 };
const kit = useBackplane();

async function health(url: string): Promise<{ status: string; engines: { id: string; healthy: boolean; circuit: string }[] }> {
  return (await (await fetch(`${url}/health`)).json()) as { status: string; engines: { id: string; healthy: boolean; circuit: string }[] };
}

describe("an engine killed and restarted", () => {
  it("goes degraded then ready, and every request accepted meanwhile is answered by the other engine", async () => {
    const a = await kit.sim();
    const b = await kit.sim();
    // Failed tries may open a's circuit; a short open period lets one probe close it once a is back.
    const node = await kit.daemon(
      [
        { id: "a", kind: "sim", url: a.url },
        { id: "b", kind: "sim", url: b.url },
      ],
      { breakerOpenMs: "300" },
    );
    expect((await health(node.url)).status).toBe("ready");

    const port = a.port;
    await a.close();
    // Requests sent right away may still pick "a" before its probe notices: they must be retried on "b".
    const answers = await Promise.all(Array.from({ length: 12 }, () => signedPost(node.url, "/v1/chat/completions", chat)));
    for (const res of answers) {
      expect(res.status).toBe(200);
      expect(res.headers.get("x-switchyard-engine")).toBe("b");
      expect(((await res.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(4);
    }
    await waitUntil(async () => (await health(node.url)).status === "degraded", 3_000, "degraded");
    const degraded = await health(node.url);
    // "a" is out of rotation: its probe failed, or the failed tries opened its circuit first.
    const a2 = degraded.engines.find((e) => e.id === "a");
    expect(a2?.healthy === false || a2?.circuit === "open").toBe(true);
    expect(degraded.engines.find((e) => e.id === "b")).toMatchObject({ healthy: true, circuit: "closed" });

    await kit.sim({ port });
    await waitUntil(async () => (await health(node.url)).status === "ready", 3_000, "ready again");
    const after = await Promise.all(Array.from({ length: 6 }, () => signedPost(node.url, "/v1/chat/completions", chat)));
    const engines = new Set(after.map((r) => r.headers.get("x-switchyard-engine")));
    expect(after.every((r) => r.status === 200)).toBe(true);
    expect(engines.has("a")).toBe(true);
  });

  it("retries the only engine with backoff and answers once it is back", async () => {
    const sim = await kit.sim();
    const node = await kit.daemon([{ id: "only", kind: "sim", url: sim.url }], { retryBackoffMs: "200,400,800", healthIntervalMs: 60_000 });
    const port = sim.port;
    await sim.close();
    const pending = signedPost(node.url, "/v1/chat/completions", chat);
    await new Promise((r) => setTimeout(r, 100));
    await kit.sim({ port });
    const res = await pending;
    expect(res.status).toBe(200);
    const metrics = await (await fetch(`${node.url}/metrics`)).text();
    expect(metrics).toMatch(/switchyard_backplane_retries_total\{kind="backoff"\} [1-9]/);
  });

  it("answers 503 with Retry-After before any byte when every retry failed", async () => {
    const sim = await kit.sim();
    const node = await kit.daemon([{ id: "only", kind: "sim", url: sim.url }], { retryBackoffMs: "20,20", healthIntervalMs: 60_000 });
    await sim.close();
    const res = await signedPost(node.url, "/v1/chat/completions", { ...chat, stream: true });
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("5");
    expect(res.headers.get("content-type")).toContain("application/json");
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("engine_unavailable");
  });
});

describe("circuit breaker", () => {
  it("opens after consecutive failures, stops sending to the engine, and closes after one good probe", async () => {
    const sim = await kit.sim();
    const node = await kit.daemon([{ id: "e", kind: "sim", url: sim.url }], {
      breakerFailures: "3",
      breakerOpenMs: "300",
      retryBackoffMs: "10,10",
      healthIntervalMs: 60_000,
    });
    // Three tries (first + two retries) hit a dead engine answer: 500 with an empty body.
    const failed = await signedPost(node.url, "/v1/chat/completions", { ...chat, sim_fault: "engine_error" });
    expect(failed.status).toBe(503);
    await failed.arrayBuffer();
    expect((await health(node.url)).engines[0]?.circuit).toBe("open");

    const before = sim.stats.requests;
    const refused = await signedPost(node.url, "/v1/chat/completions", chat);
    expect(refused.status).toBe(503);
    await refused.arrayBuffer();
    expect(sim.stats.requests).toBe(before);

    await waitUntil(async () => (await health(node.url)).engines[0]?.circuit === "closed", 3_000, "circuit closed");
    const ok = await signedPost(node.url, "/v1/chat/completions", chat);
    expect(ok.status).toBe(200);
    await ok.arrayBuffer();
  });
});

describe("load shedding", () => {
  it("answers 503 with Retry-After at once when the engine's slots and queue are full", async () => {
    const sim = await kit.sim({ interTokenMs: 40 });
    const node = await kit.daemon("kind=sim,id=e,url=" + sim.url + ",max-concurrency=1,max-queue=1");
    const slow = { ...chat, max_tokens: 15, stream: true };
    const running = await signedPost(node.url, "/v1/chat/completions", slow);
    const queued = signedPost(node.url, "/v1/chat/completions", slow);
    await waitUntil(() => node.pool.reports()[0]?.queued === 1, 2_000, "one request queued");

    const started = performance.now();
    const shed = await signedPost(node.url, "/v1/chat/completions", chat);
    expect(performance.now() - started).toBeLessThan(300);
    expect(shed.status).toBe(503);
    expect(shed.headers.get("retry-after")).toBe("1");
    expect(((await shed.json()) as { error: { code: string } }).error.code).toBe("overloaded");

    // The accepted ones are not dropped: both complete.
    expect((await running.text()).endsWith("data: [DONE]\n\n")).toBe(true);
    expect((await (await queued).text()).endsWith("data: [DONE]\n\n")).toBe(true);
    expect(await (await fetch(`${node.url}/metrics`)).text()).toContain('switchyard_backplane_shed_total{reason="queue_full"} 1');
  });
});

describe("first byte deadline", () => {
  it("gives up on a stream whose first token does not come in time, and retries it", async () => {
    const slow = await kit.sim();
    const node = await kit.daemon([{ id: "e", kind: "sim", url: slow.url }], { firstByteTimeoutMs: "100", retryBackoffMs: "10", healthIntervalMs: 60_000 });
    const started = performance.now();
    const res = await signedPost(node.url, "/v1/chat/completions", { ...chat, stream: true, sim_ttft_ms: 2_000 });
    expect(res.status).toBe(503);
    await res.arrayBuffer();
    expect(performance.now() - started).toBeLessThan(1_500);
    const metrics = await (await fetch(`${node.url}/metrics`)).text();
    expect(metrics).toContain('switchyard_backplane_engine_errors_total{engine="e",reason="before_first_byte"} 2');
  });
});
