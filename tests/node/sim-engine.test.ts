import OpenAI from "openai";
import { describe, expect, it } from "vitest";
import { useSimEngine, simPost } from "../support/sim-harness.ts";
import { countPromptTokens, type SimEngine } from "../../backplane/src/sim/index.ts";

// Engine behaviour of the simulator: timing, queueing, aborts, metrics, faults, auth.

const start = useSimEngine();

const MESSAGES = [{ role: "user", content: "Tell me about trains." }];
const LABELS = 'model_name="sim-llama-8b",engine="0"';

/** Reads one sample from /metrics. */
async function metric(sim: SimEngine, name: string, labels = LABELS): Promise<number> {
  const text = await (await fetch(`${sim.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}} `));
  if (line === undefined) throw new Error(`no sample ${name}{${labels}}`);
  return Number(line.slice(line.lastIndexOf(" ") + 1));
}

async function waitFor(check: () => Promise<boolean>, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not reached");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Reads SSE events as they arrive, with the time each one was seen, into `out`. */
async function timedEvents(res: Response, out: { data: string; at: number }[] = []): Promise<{ data: string; at: number }[]> {
  if (!res.body) throw new Error("no body");
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const part of res.body) {
    buffer += decoder.decode(part as Uint8Array, { stream: true });
    for (let end = buffer.indexOf("\n\n"); end !== -1; end = buffer.indexOf("\n\n")) {
      out.push({ data: buffer.slice(6, end), at: performance.now() });
      buffer = buffer.slice(end + 2);
    }
  }
  return out;
}

/** Reads a stream until it ends or fails; returns the events seen and the error, if any. */
async function readUntilError(res: Response): Promise<{ events: string[]; error: unknown }> {
  const seen: { data: string; at: number }[] = [];
  try {
    await timedEvents(res, seen);
  } catch (error) {
    return { events: seen.map((e) => e.data), error };
  }
  return { events: seen.map((e) => e.data), error: null };
}

describe("simulated vLLM: timing and scheduling", () => {
  it("sends tokens one by one, ttftMs then interTokenMs apart", async () => {
    const sim = await start({ ttftMs: 60, interTokenMs: 40 });
    const sent = performance.now();
    const res = await simPost(sim, "/v1/chat/completions", { messages: MESSAGES, max_tokens: 4, stream: true });
    const events = await timedEvents(res);
    expect(events.map((e) => e.data.includes('"role":"assistant"'))).toEqual([true, false, false, false, false, false]);
    const content = events.slice(1, 5);
    expect((content[0]?.at ?? 0) - sent).toBeGreaterThanOrEqual(55);
    for (let i = 1; i < content.length; i++) {
      expect((content[i]?.at ?? 0) - (content[i - 1]?.at ?? 0)).toBeGreaterThanOrEqual(25);
    }
    expect((content[3]?.at ?? 0) - sent).toBeLessThan(60 + 3 * 40 + 150);
  });

  it("adds prefill time for the prompt tokens the prefix cache did not hold", async () => {
    const sim = await start({ ttftMs: 0, prefillMsPerToken: 2 });
    const long = [{ role: "system", content: "word ".repeat(60) }, ...MESSAGES];
    const prompt = countPromptTokens(long);
    const timed = async () => {
      const sent = performance.now();
      await (await simPost(sim, "/v1/chat/completions", { messages: long, max_tokens: 1 })).text();
      return performance.now() - sent;
    };
    // Cold: every prompt token is computed. Warm: only what is left after the cached 16-token blocks.
    expect(await timed()).toBeGreaterThanOrEqual(prompt * 2 - 5);
    const uncached = prompt - Math.floor(prompt / 16) * 16;
    expect(await timed()).toBeLessThan(uncached * 2 + 40);
  });

  it("lets sim_ttft_ms override the time to first token per request", async () => {
    const sim = await start();
    const sent = performance.now();
    const res = await simPost(sim, "/v1/chat/completions", { messages: MESSAGES, max_tokens: 2, sim_ttft_ms: 150 });
    expect(res.status).toBe(200);
    expect(performance.now() - sent).toBeGreaterThanOrEqual(145);
    expect(await metric(sim, "vllm:time_to_first_token_seconds_sum")).toBeGreaterThanOrEqual(0.145);
  });

  it("queues beyond maxConcurrency (num_requests_waiting) and frees the slot when a client aborts", async () => {
    const sim = await start({ maxConcurrency: 1, interTokenMs: 20 });
    const controller = new AbortController();
    const first = await simPost(sim, "/v1/chat/completions", { messages: MESSAGES, max_tokens: 200, stream: true }, { signal: controller.signal });
    const second = await simPost(sim, "/v1/chat/completions", { messages: MESSAGES, max_tokens: 2, stream: true });
    // Headers go out at once (Starlette starts the response before the engine produces anything).
    expect(second.status).toBe(200);
    await waitFor(async () => (await metric(sim, "vllm:num_requests_waiting")) === 1);
    expect(await metric(sim, "vllm:num_requests_running")).toBe(1);
    expect(await metric(sim, "vllm:kv_cache_usage_perc")).toBeGreaterThan(0);

    controller.abort();
    await first.body?.cancel().catch(() => undefined);
    const text = await second.text();
    expect(text.endsWith("data: [DONE]\n\n")).toBe(true);
    await waitFor(async () => (await metric(sim, "vllm:num_requests_running")) === 0);
    expect(await metric(sim, "vllm:num_requests_waiting")).toBe(0);
    expect(await metric(sim, "vllm:kv_cache_usage_perc")).toBe(0);
    expect(await metric(sim, "vllm:request_success_total", `${LABELS},finished_reason="abort"`)).toBe(1);
    expect(await metric(sim, "vllm:request_success_total", `${LABELS},finished_reason="length"`)).toBe(1);
    expect(await metric(sim, "vllm:request_queue_time_seconds_count")).toBe(2);
    // The second request was seen waiting, so its queue time is positive (its length depends on how soon the abort lands).
    expect(await metric(sim, "vllm:request_queue_time_seconds_sum")).toBeGreaterThan(0);
  });

  it("serves thousands of non-stream requests per second with zero delays", async () => {
    const sim = await start({ outputTokens: 16 });
    const openai = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: "x", maxRetries: 0 });
    const started = performance.now();
    let done = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        for (let i = 0; i < 40; i++) {
          const r = await openai.chat.completions.create({ model: "sim-llama-8b", messages: [{ role: "user", content: `q${i}` }] });
          if (r.usage?.completion_tokens === 16) done++;
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    expect(done).toBe(1280);
    expect(seconds).toBeLessThan(10);
    const long = await simPost(sim, "/v1/completions", { prompt: "x", max_tokens: 3000, ignore_eos: true, stream: true });
    expect((await long.text()).split("\n\n").length).toBe(3000 + 2);
  });
});

describe("simulated vLLM: metrics", () => {
  it("exposes vLLM's metric names and counts what it did", async () => {
    const sim = await start({ outputTokens: 10 });
    const text = await (await fetch(`${sim.url}/metrics`)).text();
    for (const name of [
      "vllm:num_requests_running gauge",
      "vllm:num_requests_waiting gauge",
      "vllm:kv_cache_usage_perc gauge",
      "vllm:gpu_cache_usage_perc gauge",
      "vllm:prompt_tokens_total counter",
      "vllm:generation_tokens_total counter",
      "vllm:request_success_total counter",
      "vllm:prefix_cache_queries_total counter",
      "vllm:prefix_cache_hits_total counter",
      "vllm:num_preemptions_total counter",
      "vllm:time_to_first_token_seconds histogram",
      "vllm:e2e_request_latency_seconds histogram",
      "vllm:inter_token_latency_seconds histogram",
      "vllm:request_queue_time_seconds histogram",
    ]) {
      expect(text).toContain(`# TYPE ${name}\n`);
    }
    expect(text).toContain(`vllm:time_to_first_token_seconds_bucket{${LABELS},le="0.001"} 0.0\n`);
    expect(text).toContain(`vllm:request_success_total{${LABELS},finished_reason="stop"} 0.0\n`);

    const long = [{ role: "system", content: "word ".repeat(60) }, ...MESSAGES];
    await simPost(sim, "/v1/chat/completions", { messages: long });
    await (await simPost(sim, "/v1/chat/completions", { messages: long, max_tokens: 4, stream: true })).text();
    const prompt = countPromptTokens(long);
    expect(await metric(sim, "vllm:prompt_tokens_total")).toBe(2 * prompt);
    expect(await metric(sim, "vllm:generation_tokens_total")).toBe(10 + 4);
    expect(await metric(sim, "vllm:request_success_total", `${LABELS},finished_reason="stop"`)).toBe(1);
    expect(await metric(sim, "vllm:request_success_total", `${LABELS},finished_reason="length"`)).toBe(1);
    expect(await metric(sim, "vllm:time_to_first_token_seconds_count")).toBe(2);
    expect(await metric(sim, "vllm:e2e_request_latency_seconds_count")).toBe(2);
    expect(await metric(sim, "vllm:inter_token_latency_seconds_count")).toBe(9 + 3);
    expect(await metric(sim, "vllm:prefix_cache_queries_total")).toBe(2 * prompt);
    // The repeated prompt hits the cache in whole 16-token blocks.
    expect(await metric(sim, "vllm:prefix_cache_hits_total")).toBe(Math.floor(prompt / 16) * 16);
    expect(await metric(sim, "vllm:num_preemptions_total")).toBe(0);
  });
});

describe("simulated vLLM: fault injection", () => {
  it("error_mid_stream sends vLLM's in-band error event after N tokens, then [DONE]", async () => {
    const sim = await start();
    const res = await simPost(sim, "/v1/chat/completions", { messages: MESSAGES, stream: true, sim_fault: "error_mid_stream" });
    expect(res.status).toBe(200);
    const events = (await timedEvents(res)).map((e) => e.data);
    expect(events).toHaveLength(1 + 3 + 2);
    expect(events[4]).toMatch(/^\{"error": \{"message": ".+", "type": "InternalServerError", "param": null, "code": 500\}\}$/);
    expect(events[5]).toBe("[DONE]");
    const one = await simPost(sim, "/v1/completions", { prompt: "x", stream: true, sim_fault: "error_mid_stream", sim_fault_after: 1 });
    expect((await timedEvents(one)).map((e) => e.data.slice(0, 10))).toEqual(['{"id":"cmp', '{"error": ', "[DONE]"]);
    const plain = await simPost(sim, "/v1/chat/completions", { messages: MESSAGES, sim_fault: "error_mid_stream" });
    expect(plain.status).toBe(500);
    expect(((await plain.json()) as { error: { type: string; code: number } }).error).toMatchObject({ type: "InternalServerError", code: 500 });
    expect(await metric(sim, "vllm:request_success_total", `${LABELS},finished_reason="abort"`)).toBe(3);
  });

  it("drop_mid_stream cuts the connection after N tokens", async () => {
    const sim = await start({ interTokenMs: 5 });
    const res = await simPost(sim, "/v1/chat/completions", { messages: MESSAGES, stream: true, sim_fault: "drop_mid_stream", sim_fault_after: 2 });
    expect(res.status).toBe(200);
    const { events, error } = await readUntilError(res);
    expect(error).toBeInstanceOf(Error);
    expect(events.length).toBeLessThanOrEqual(3);
    expect(events.join("")).not.toContain("[DONE]");
  });

  it("engine_error answers 500 with an empty body, streaming or not", async () => {
    const sim = await start();
    for (const stream of [false, true]) {
      const res = await simPost(sim, "/v1/chat/completions", { messages: MESSAGES, stream, sim_fault: "engine_error" });
      expect(res.status).toBe(500);
      expect(res.headers.get("content-length")).toBe("0");
      expect(await res.text()).toBe("");
    }
  });
});

describe("simulated vLLM: auth and plain endpoints", () => {
  it("requires the API key on /v1/* only, answering 401 {error: Unauthorized}", async () => {
    const sim = await start({ apiKey: "sekret" });
    for (const auth of [undefined, "Bearer wrong", "Basic sekret"]) {
      const res = await fetch(`${sim.url}/v1/models`, { headers: auth ? { authorization: auth } : {} });
      expect(res.status).toBe(401);
      expect(await res.json()).toEqual({ error: "Unauthorized" });
    }
    const denied = await simPost(sim, "/v1/chat/completions", { messages: MESSAGES });
    expect(denied.status).toBe(401);
    expect((await fetch(`${sim.url}/v1/models`, { headers: { authorization: "bearer sekret" } })).status).toBe(200);
    for (const path of ["/health", "/metrics", "/version"]) expect((await fetch(`${sim.url}${path}`)).status).toBe(200);
    const good = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: "sekret", maxRetries: 0 });
    expect((await good.chat.completions.create({ model: "sim-llama-8b", messages: [{ role: "user", content: "hi" }], max_tokens: 1 })).choices).toHaveLength(1);
    const bad = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: "x", maxRetries: 0 });
    await expect(bad.models.list()).rejects.toMatchObject({ status: 401 });
    expect(sim.stats.requests).toBe(3 + 1 + 1 + 1 + 1);
  });

  it("answers /health, /ping, /version and unknown paths like vLLM's FastAPI app", async () => {
    const sim = await start();
    const health = await fetch(`${sim.url}/health`);
    expect(health.status).toBe(200);
    expect(await health.text()).toBe("");
    expect((await simPost(sim, "/ping", {})).status).toBe(200);
    expect(await (await fetch(`${sim.url}/version`)).json()).toEqual({ version: "0.11.0" });
    const missing = await fetch(`${sim.url}/v1/nope`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ detail: "Not Found" });
    expect((await fetch(`${sim.url}/v1/chat/completions`)).status).toBe(405);
    expect(sim.stats.requests).toBe(2);
  });

  it("close() aborts open streams and is safe to call twice", async () => {
    const sim = await start({ interTokenMs: 20 });
    const res = await simPost(sim, "/v1/chat/completions", { messages: MESSAGES, max_tokens: 500, stream: true });
    const reading = readUntilError(res);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await Promise.all([sim.close(), sim.close()]);
    await sim.close();
    const { events, error } = await reading;
    expect(error).toBeInstanceOf(Error);
    expect(events.length).toBeGreaterThan(0);
    await expect(fetch(`${sim.url}/health`)).rejects.toThrow();
  });
});
