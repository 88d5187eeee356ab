/**
 * End to end: reconciliation on the real local stack (wrangler dev + backplane + simulated engine +
 * Postgres + Redis) driven by the official `openai` client. The engine's own counters travel in
 * the backplane's heartbeats; the test proves the gateway meters exactly what the engine counted,
 * and that events lost on the way to Postgres show up as an alert of exactly their tokens.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import OpenAI from "openai";
import type { ChatCompletionCreateParamsNonStreaming } from "openai/resources/chat/completions";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parsePrometheus, sumMetric } from "../../backplane/src/engines/prometheus.ts";
import type { Stack } from "../../dev/stack.ts";
import type { ReconcileRunJson, ReconciliationJson } from "../../worker/src/admin/wire.ts";
import { startTestStack, type TestStack } from "../support/e2e-stack.ts";
import { REDIS_URL } from "../support/fixtures.ts";

const ENGINE = "sim-0"; // the engine id dev/stack.ts gives the simulator
let started: TestStack;
let redisPrefix: string;
let outbox: string;
let stack: Stack;
let client: OpenAI;
let redis: Redis;

beforeAll(async () => {
  // A stack started in minute 0 runs the hourly job (and its reconciliation baseline) at once: start clear of it.
  await awayFromTheHour();
  started = await startTestStack("rec", {
    simArgs: ["--ttft-ms", "5", "--inter-token-ms", "2"],
    // Fresh counters reach the gateway within a few hundred milliseconds.
    backplaneEnv: { BACKPLANE_HEARTBEAT_INTERVAL_MS: "250", BACKPLANE_LOAD_INTERVAL_MS: "100" },
  });
  ({ stack, redisPrefix } = started);
  outbox = `${redisPrefix}outbox:usage`;
  client = new OpenAI({ baseURL: `${stack.gatewayUrl}/v1`, apiKey: stack.apiKey, maxRetries: 0 });
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  // Up to three minutes clearing the hour, then the stack's start.
}, 300_000);

afterAll(async () => {
  redis?.disconnect();
  await started?.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function adminCall<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${stack.gatewayUrl}/admin${path}`, {
    method,
    headers: { authorization: `Bearer ${stack.adminToken}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = (await res.json()) as T;
  expect({ status: res.status, json }).toMatchObject({ status: 200 });
  return json;
}

const reconcile = () => adminCall<ReconcileRunJson>("POST", "/reconciliation/run", { node_id: stack.nodeId });

/** The simulator's own lifetime counters, summed over its models. */
async function engineTotals(): Promise<{ promptTokens: number; generationTokens: number }> {
  const samples = parsePrometheus(await (await fetch(`${stack.simUrl}/metrics`)).text());
  return { promptTokens: sumMetric(samples, "vllm:prompt_tokens_total") ?? 0, generationTokens: sumMetric(samples, "vllm:generation_tokens_total") ?? 0 };
}

/**
 * Waits for a heartbeat that arrived after `after` (unix ms) and carries the engine's current
 * counters: the window it closes holds every request made before `after`.
 */
async function heartbeatAfter(after: number): Promise<void> {
  const expected = await engineTotals();
  const deadline = Date.now() + 10_000;
  for (;;) {
    const raw = await redis.hget(`${redisPrefix}nodes:live`, stack.nodeId);
    const live = raw === null ? null : (JSON.parse(raw) as { at: number; counters?: Record<string, { promptTokens: number; generationTokens: number }> });
    if (live && live.at > after && live.counters?.[ENGINE]?.promptTokens === expected.promptTokens && live.counters[ENGINE].generationTokens === expected.generationTokens) return;
    if (Date.now() > deadline) throw new Error(`no heartbeat with ${JSON.stringify(expected)} after ${after}: ${raw}`);
    await sleep(50);
  }
}

/**
 * The stack fires the hourly cron itself in minute 0 (at its start, too): keep this test clear of it,
 * from the stack's start to its last reconciliation (under two minutes).
 */
async function awayFromTheHour(): Promise<void> {
  const now = new Date();
  const minute = now.getUTCMinutes();
  if (minute === 0 || minute === 58 || minute === 59) {
    await sleep(((60 - now.getUTCMinutes()) % 60) * 60_000 + 60_000 - now.getUTCSeconds() * 1_000 - now.getUTCMilliseconds() + 1_000);
  }
}

const messages = [{ role: "user" as const, content: "Reconcile the ledger, line by line." }];

/** A mix of what clients do: non-streamed and streamed chat (with and without the usage chunk), completions, embeddings. */
async function traffic(): Promise<void> {
  await client.chat.completions.create({ model: "sim-llama-8b", messages, max_tokens: 20 });
  await client.chat.completions.create({ model: "sim-llama-8b", messages: [...messages, { role: "assistant", content: "Sure." }, { role: "user", content: "Go on." }], max_tokens: 7 });
  for (const include_usage of [false, true]) {
    const stream = await client.chat.completions.create({ model: "sim-llama-8b", messages, max_tokens: 15, stream: true, stream_options: include_usage ? { include_usage } : undefined });
    for await (const chunk of stream) void chunk;
  }
  await client.completions.create({ model: "sim-llama-8b", prompt: "Once upon a time", max_tokens: 9 });
  const stream = await client.completions.create({ model: "sim-llama-8b", prompt: "In a galaxy far away", max_tokens: 11, stream: true });
  for await (const chunk of stream) void chunk;
  await client.embeddings.create({ model: "sim-embed", input: ["ledger", "balance sheet"] });
}

describe("reconciliation on the local stack", () => {
  it("finds zero drift for what the gateway metered, then an alert of exactly the tokens of lost usage events", { timeout: 150_000 }, async () => {
    await heartbeatAfter(0);
    const first = await reconcile();
    expect(first.nodes).toEqual([{ node_id: stack.nodeId, outcome: "baseline", sampled_at: expect.any(String) as unknown }]);
    const before = await engineTotals();

    await traffic();
    await heartbeatAfter(Date.now());
    const clean = await reconcile();
    expect(clean.nodes).toMatchObject([{ node_id: stack.nodeId, outcome: "reconciled" }]);
    const after = await engineTotals();
    const engine = { prompt: after.promptTokens - before.promptTokens, generation: after.generationTokens - before.generationTokens };
    expect(engine.prompt).toBeGreaterThan(0);
    expect(clean.data).toEqual([
      expect.objectContaining({
        node_id: stack.nodeId,
        window_start: first.nodes[0]?.sampled_at,
        engine_prompt_tokens: engine.prompt,
        engine_generation_tokens: engine.generation,
        metered_prompt_tokens: engine.prompt,
        metered_completion_tokens: engine.generation,
        drift_prompt_tokens: 0,
        drift_generation_tokens: 0,
        drift_ratio: 0,
        alert: false,
        engine_restarted: false,
      }),
    ]);

    // Lost events: while this test holds the flush lock (as a running flush would), two of four
    // requests' events are deleted from the outbox before they reach Postgres.
    await expect.poll(() => redis.set(`${outbox}:lock`, "e2e-test", "PX", 60_000, "NX"), { timeout: 10_000 }).toBe("OK");
    const lost = { prompt: 0, completion: 0 };
    try {
      const ids: string[] = [];
      for (let i = 0; i < 4; i++) {
        // ignore_eos (a vLLM extra): exactly max_tokens tokens, so the lost tokens are known in advance.
        const params = { model: "sim-llama-8b", messages, max_tokens: 40 + i, ignore_eos: true } as ChatCompletionCreateParamsNonStreaming;
        const { data, response } = await client.chat.completions.create(params).withResponse();
        ids.push(response.headers.get("x-request-id") ?? "");
        if (i % 2 === 1) {
          lost.prompt += data.usage?.prompt_tokens ?? 0;
          lost.completion += data.usage?.completion_tokens ?? 0;
        }
      }
      const queued = async () => (await redis.lrange(outbox, 0, -1)).filter((raw) => ids.includes((JSON.parse(raw) as { id: string }).id));
      await expect.poll(async () => (await queued()).length, { timeout: 5_000 }).toBe(4);
      for (const raw of await queued()) {
        if (ids.indexOf((JSON.parse(raw) as { id: string }).id) % 2 === 1) expect(await redis.lrem(outbox, 1, raw)).toBe(1);
      }
    } finally {
      await redis.del(`${outbox}:lock`);
    }
    expect(lost.completion).toBe(41 + 43);

    await heartbeatAfter(Date.now());
    const missed = await reconcile();
    expect(missed.data).toHaveLength(1);
    const row = missed.data[0] as ReconciliationJson;
    expect(row).toMatchObject({
      window_start: clean.data[0]?.window_end,
      drift_prompt_tokens: lost.prompt,
      drift_generation_tokens: lost.completion,
      metered_prompt_tokens: row.engine_prompt_tokens - lost.prompt,
      metered_completion_tokens: row.engine_generation_tokens - lost.completion,
      alert: true,
      engine_restarted: false,
    });
    expect(row.drift_ratio).toBeCloseTo((lost.prompt + lost.completion) / (row.engine_prompt_tokens + row.engine_generation_tokens), 10);

    // The operator sees it through the admin API and the CLI.
    const alerts = await adminCall<{ data: ReconciliationJson[] }>("GET", "/reconciliation?alert=true");
    expect(alerts.data).toEqual([row]);
    const { stdout } = await promisify(execFile)(process.execPath, ["worker/cli/admin.ts", "reconciliation", "--alerts", "--url", stack.gatewayUrl, "--token", stack.adminToken]);
    const lines = stdout.trim().split("\n");
    expect(lines[0]?.split(/\s{2,}/)).toEqual(["NODE", "WINDOW START", "WINDOW END", "ENGINE P/G", "METERED P/C", "DRIFT P/G", "RATIO", "ALERT", "RESTART"]);
    expect(lines).toHaveLength(2);
    expect(lines[1]?.split(/\s{2,}/)).toMatchObject([stack.nodeId, expect.any(String), expect.any(String), expect.any(String), expect.any(String), `${lost.prompt}/${lost.completion}`, expect.stringMatching(/%$/), "ALERT", "-"]);
  });
});
