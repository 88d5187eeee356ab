/**
 * Reconciliation of metered tokens with the engines' counters: signed heartbeats carry the
 * counters, usage events go through the real outbox and flush, and the admin API runs and reports.
 */
import { createExecutionContext, createScheduledController, env, waitOnExecutionContext } from "cloudflare:test";
import { exports } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import type { Heartbeat } from "../../schema/contracts/heartbeat.ts";
import { nodeTokenCounters, reconciliations } from "../../schema/tables/index.ts";
import type { ReconcileRunJson, ReconciliationJson } from "../../worker/src/admin/wire.ts";
import { usageOutboxKey } from "../../worker/src/metering/flush.ts";
import type { UsageRow } from "../../worker/src/metering/record.ts";
import { liveNodesKey } from "../../worker/src/nodes/live.ts";
import { enqueue } from "../../worker/src/platform/outbox.ts";
import { sendHeartbeat } from "./fleet-helpers.ts";
import { admin, expectStatus, sandbox, type ErrorBody, type List } from "./admin-helpers.ts";
import { flushNow, query, redis } from "./helpers.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function newNode(): string {
  return `rec-${crypto.randomUUID().slice(0, 8)}`;
}

/** Engine id → [prompt tokens total, generation tokens total] (null: the engine reports no counters). */
type Counters = Record<string, [number, number] | null>;

/** Sends a signed heartbeat whose engines report these lifetime counters. */
async function heartbeat(nodeId: string, counters: Counters): Promise<void> {
  const hb: Heartbeat = {
    nodeId,
    region: "rec-region",
    url: "http://127.0.0.1:9",
    status: "ready",
    models: [],
    intervalMs: 5_000,
    sentAt: Date.now(),
    engines: Object.entries(counters).map(([id, c]) => ({
      id,
      kind: "vllm" as const,
      models: [],
      healthy: true,
      circuit: "closed" as const,
      inFlight: 0,
      queued: 0,
      maxConcurrency: 8,
      running: 0,
      waiting: 0,
      kvCacheUsage: 0,
      recentTtftMs: null,
      promptTokensTotal: c === null ? null : c[0],
      generationTokensTotal: c === null ? null : c[1],
    })),
  };
  await sendHeartbeat(hb);
  // The window ends at the gateway's clock when the heartbeat arrived: keep later events after it.
  await sleep(15);
}

/** Queues usage events of requests the node served, ending now (as the proxy does after a request). */
async function served(nodeId: string, requests: [prompt: number, completion: number][]): Promise<void> {
  await sleep(15);
  for (const [promptTokens, completionTokens] of requests) {
    const row: UsageRow = {
      id: `req_rec_${crypto.randomUUID().replaceAll("-", "")}`,
      at: new Date(Date.now() - 10),
      tenantId: "ten_rec",
      environmentId: "env_rec",
      apiKeyId: "key_rec",
      endpoint: "chat",
      model: "sim-llama-8b",
      regionId: "rec-region",
      nodeId,
      status: "ok",
      httpStatus: 200,
      streamed: false,
      promptTokens,
      completionTokens,
      cachedPromptTokens: 0,
      ttftMs: 2,
      latencyMs: 5,
      costMicros: 0,
      errorCode: null,
    };
    await enqueue(redis(), usageOutboxKey(env.REDIS_PREFIX), row);
  }
}

/** `POST /admin/reconciliation/run` for one node, as the operator. */
async function run(nodeId: string): Promise<ReconcileRunJson> {
  return expectStatus(await admin<ReconcileRunJson>("POST", "/reconciliation/run", { node_id: nodeId }), 200);
}

async function only(nodeId: string): Promise<ReconciliationJson> {
  const body = await run(nodeId);
  expect(body.nodes).toEqual([{ node_id: nodeId, outcome: "reconciled", reconciliation_id: body.data[0]?.id }]);
  expect(body.data).toHaveLength(1);
  return body.data[0] as ReconciliationJson;
}

async function baseline(nodeId: string) {
  return query(async (db) => (await db.select().from(nodeTokenCounters).where(eq(nodeTokenCounters.nodeId, nodeId)))[0]);
}

async function listed(path: string): Promise<ReconciliationJson[]> {
  return expectStatus(await admin<List<ReconciliationJson>>("GET", path), 200).data;
}

describe("reconciliation", () => {
  it("records a baseline first, then zero drift and no alert when the gateway metered what the engine counted", async () => {
    const node = newNode();
    await heartbeat(node, { "vllm-0": [1_000, 500] });
    const first = await run(node);
    expect(first.data).toEqual([]);
    expect(first.nodes).toEqual([{ node_id: node, outcome: "baseline", sampled_at: expect.any(String) as unknown }]);
    const start = await baseline(node);
    expect(start?.engines).toEqual({ "vllm-0": { promptTokens: 1_000, generationTokens: 500 } });
    expect(start?.sampledAt.toISOString()).toBe(first.nodes[0]?.sampled_at);
    expect((await run(node)).nodes).toEqual([{ node_id: node, outcome: "no_new_sample" }]);

    await served(node, [[120, 40], [180, 110]]);
    await heartbeat(node, { "vllm-0": [1_300, 650] });
    const row = await only(node);
    expect(row).toMatchObject({
      object: "reconciliation",
      node_id: node,
      window_start: start?.sampledAt.toISOString(),
      engine_prompt_tokens: 300,
      engine_generation_tokens: 150,
      metered_prompt_tokens: 300,
      metered_completion_tokens: 150,
      drift_prompt_tokens: 0,
      drift_generation_tokens: 0,
      drift_ratio: 0,
      alert: false,
      engine_restarted: false,
    });
    const next = await baseline(node);
    expect(next?.sampledAt.toISOString()).toBe(row.window_end);
    expect(next?.engines).toEqual({ "vllm-0": { promptTokens: 1_300, generationTokens: 650 } });

    // Nothing new since: a rerun writes nothing; the admin API lists the one row.
    expect((await run(node)).nodes).toEqual([{ node_id: node, outcome: "no_new_sample" }]);
    expect(await listed(`/reconciliation?node_id=${node}`)).toEqual([row]);
    expect(await listed(`/reconciliation?node_id=${node}&alert=true`)).toEqual([]);
  });

  it("raises an alert with the exact drift when the gateway missed usage events", async () => {
    const node = newNode();
    await heartbeat(node, { "vllm-0": [5_000, 2_000] });
    await run(node);
    // Five requests reached the engine; the events of two of them never reached the gateway's books.
    await served(node, [[400, 300], [400, 300], [400, 300]]);
    await heartbeat(node, { "vllm-0": [7_000, 3_500] });
    const row = await only(node);
    expect(row).toMatchObject({
      engine_prompt_tokens: 2_000,
      engine_generation_tokens: 1_500,
      metered_prompt_tokens: 1_200,
      metered_completion_tokens: 900,
      drift_prompt_tokens: 800,
      drift_generation_tokens: 600,
      drift_ratio: 0.4,
      alert: true,
      engine_restarted: false,
    });
    expect(await listed(`/reconciliation?alert=true&node_id=${node}`)).toEqual([row]);
    expect(await listed(`/reconciliation?alert=false&node_id=${node}`)).toEqual([]);
    expect((await listed("/reconciliation?alert=true")).map((r) => r.id)).toContain(row.id);
    expect(await listed(`/reconciliation?node_id=${node}&since=${encodeURIComponent(row.window_end)}`)).toEqual([row]);
    expect(await listed(`/reconciliation?node_id=${node}&since=${encodeURIComponent(new Date(Date.parse(row.window_end) + 1).toISOString())}`)).toEqual([]);

    const metrics = await exports.default.fetch(new Request("http://gateway.test/admin/metrics", { headers: { authorization: `Bearer ${env.ADMIN_TOKEN}` } }));
    expect(await metrics.text()).toContain(`switchyard_reconciliation_alerts_total{node="${node}"} 1`);
  });

  it("flags an engine restart (a counter going down) and counts the restarted engine from zero", async () => {
    const node = newNode();
    await heartbeat(node, { "vllm-0": [10_000, 5_000], "vllm-1": [300, 200] });
    await run(node);
    await served(node, [[250, 100], [100, 60]]);
    await heartbeat(node, { "vllm-0": [250, 100], "vllm-1": [400, 260] });
    const row = await only(node);
    expect(row).toMatchObject({ engine_prompt_tokens: 350, engine_generation_tokens: 160, drift_prompt_tokens: 0, drift_generation_tokens: 0, alert: false, engine_restarted: true });

    // An engine that reports no counters keeps its baseline; the others go on.
    await served(node, [[50, 25]]);
    await heartbeat(node, { "vllm-0": null, "vllm-1": [450, 285] });
    const quiet = await only(node);
    expect(quiet).toMatchObject({ engine_prompt_tokens: 50, engine_generation_tokens: 25, drift_prompt_tokens: 0, drift_generation_tokens: 0, engine_restarted: false });
    expect((await baseline(node))?.engines).toEqual({ "vllm-0": { promptTokens: 250, generationTokens: 100 }, "vllm-1": { promptTokens: 450, generationTokens: 285 } });
  });

  it("alerts only above RECONCILE_DRIFT_THRESHOLD (1 %) with at least RECONCILE_MIN_DRIFT_TOKENS (100) tokens of drift", async () => {
    const node = newNode();
    let engine: [number, number] = [0, 0];
    const window = async (engineAdds: [number, number], metered: [number, number][]) => {
      await served(node, metered);
      engine = [engine[0] + engineAdds[0], engine[1] + engineAdds[1]];
      await heartbeat(node, { "vllm-0": engine });
      return only(node);
    };
    await heartbeat(node, { "vllm-0": engine });
    await run(node);

    // 90 tokens of drift is 100 % of a quiet window, but under the minimum.
    expect(await window([50, 40], [])).toMatchObject({ drift_prompt_tokens: 50, drift_generation_tokens: 40, drift_ratio: 1, alert: false });
    // 150 tokens of drift in 30 000 (0.5 %): under the ratio.
    expect(await window([20_000, 10_000], [[19_900, 9_950]])).toMatchObject({ drift_prompt_tokens: 100, drift_generation_tokens: 50, drift_ratio: 0.005, alert: false });
    // 350 tokens in 30 000 (1.17 %): both over.
    const over = await window([20_000, 10_000], [[19_700, 9_950]]);
    expect(over).toMatchObject({ drift_prompt_tokens: 300, drift_generation_tokens: 50, alert: true });
    expect(over.drift_ratio).toBeCloseTo(350 / 30_000, 10);
    // Metering more than the engine counted (double counting) is drift too.
    expect(await window([100, 100], [[300, 100]])).toMatchObject({ drift_prompt_tokens: -200, drift_generation_tokens: 0, drift_ratio: 1, alert: true });
  });

  it("leaves a node for the next run while usage events of its window are still in Redis", async () => {
    const node = newNode();
    await heartbeat(node, { "vllm-0": [0, 0] });
    await run(node);
    await served(node, [[30, 70], [30, 70]]);
    await heartbeat(node, { "vllm-0": [60, 140] });
    // Another flush holds the queue (its lock), so these events cannot reach Postgres now.
    const lock = `${usageOutboxKey(env.REDIS_PREFIX)}:lock`;
    await redis().set(lock, "someone-else", { px: 30_000 });
    try {
      const blocked = await run(node);
      expect(blocked.data).toEqual([]);
      expect(blocked.nodes).toEqual([{ node_id: node, outcome: "usage_pending", events: 2 }]);
    } finally {
      await redis().del(lock);
    }
    expect(await listed(`/reconciliation?node_id=${node}`)).toEqual([]);
    expect(await only(node)).toMatchObject({ metered_prompt_tokens: 60, metered_completion_tokens: 140, drift_prompt_tokens: 0, drift_generation_tokens: 0, alert: false });
  });

  it("writes one row per window even when two runs race", async () => {
    const node = newNode();
    await heartbeat(node, { "vllm-0": [100, 100] });
    await run(node);
    await served(node, [[10, 20]]);
    await heartbeat(node, { "vllm-0": [110, 120] });
    await flushNow(); // so neither run waits for the other's flush
    const [a, b] = await Promise.all([run(node), run(node)]);
    expect([...a.data, ...b.data]).toHaveLength(1);
    const rows = await query((db) => db.select().from(reconciliations).where(eq(reconciliations.nodeId, node)));
    expect(rows).toHaveLength(1);
    expect(rows[0]?.id).toBe(`rec_${node}_${rows[0]?.windowEnd.getTime()}`);
  });

  it("reconciles on the hourly cron only, and reads live entries written before nodes reported counters", async () => {
    const node = newNode();
    const old = newNode();
    await heartbeat(node, { "vllm-0": [0, 0] });
    // A live entry in the shape the gateway wrote before token counters existed.
    await redis().hset(liveNodesKey(env.REDIS_PREFIX), {
      [old]: { status: "ready", at: Date.now(), intervalMs: 5_000, models: [], inFlight: 0, capacity: 8, waiting: null, kvCacheUsage: null },
    });
    const { default: worker } = await import("../../worker/src/index.ts");
    const cron = async (expression: string) => {
      const ctx = createExecutionContext();
      worker.scheduled(createScheduledController({ cron: expression, scheduledTime: Date.now() }), env, ctx);
      await waitOnExecutionContext(ctx);
    };
    await cron("* * * * *");
    expect(await baseline(node)).toBeUndefined();
    await cron("0 * * * *");
    expect((await baseline(node))?.engines).toEqual({ "vllm-0": { promptTokens: 0, generationTokens: 0 } });
    await served(node, [[5, 5]]);
    await heartbeat(node, { "vllm-0": [5, 5] });
    await cron("0 * * * *");
    expect(await listed(`/reconciliation?node_id=${node}`)).toMatchObject([{ engine_prompt_tokens: 5, metered_prompt_tokens: 5, drift_prompt_tokens: 0 }]);
    expect((await run(old)).nodes).toEqual([{ node_id: old, outcome: "no_counters" }]);
    await redis().hdel(liveNodesKey(env.REDIS_PREFIX), old);
  });

  it("is the operator's: an admin-scoped tenant key is refused", async () => {
    const { adminKey } = await sandbox();
    const list = await admin<ErrorBody>("GET", "/reconciliation", undefined, adminKey);
    expect(list.status).toBe(403);
    expect(list.body.error).toMatchObject({ code: "permission_denied", type: "permission_error" });
    const runs = await admin<ErrorBody>("POST", "/reconciliation/run", {}, adminKey);
    expect(runs.status).toBe(403);
    expect((await admin<ErrorBody>("GET", "/reconciliation?alert=maybe")).body.error.param).toBe("alert");
  });
});
