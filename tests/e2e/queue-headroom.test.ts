/**
 * End to end: class headroom in the edge queue (QUEUE_CLASS_HEADROOM_PERCENT, docs/priority.md) on
 * plain workerd with one backplane in front of one simulated engine that runs two requests at once.
 * With an in-flight target of 2 and 25 % headroom, batch counts the node full at 1: while one batch
 * request runs, a second batch request waits at the gateway and an interactive one arriving after it
 * takes the free slot at once; the waiting batch request runs once the first ends.
 */
import { Redis } from "ioredis";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEdge, waitForNodes, type Edge } from "../../bench/lib/edge.ts";
import { ROOT } from "../../bench/lib/workerd.ts";
import { openDb, type NodeDb } from "../../dev/db.ts";
import { LocalNode } from "../../dev/nodes.ts";
import { PG_ADMIN_URL, REDIS_URL, uniqueSuffix } from "../support/fixtures.ts";

const suffix = uniqueSuffix();
const redisPrefix = `sy:e2e-headroom:${suffix}:`;
const MODEL = "sim-llama-8b";
let edge: Edge;
let node: LocalNode;
let db: NodeDb;
let redis: Redis;
let interactiveKey: string;

beforeAll(async () => {
  edge = await startEdge({
    pgAdminUrl: PG_ADMIN_URL,
    redisUrl: REDIS_URL,
    redisPrefix,
    databaseName: `sy_e2e_headroom_${suffix}`,
    // The probe (a waiter let through when no slot frees for this long) is pushed out of the test's way.
    vars: { EDGE_QUEUE_MAX_WAIT_MS: "8000", EDGE_QUEUE_RECHECK_MS: "30000", QUEUE_INFLIGHT_TARGET: "2", QUEUE_CLASS_HEADROOM_PERCENT: "25" },
  });
  db = openDb(edge.databaseUrl);
  redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  redis.on("error", () => {});
  const backplaneEnv: Record<string, string> = { BACKPLANE_HEARTBEAT_INTERVAL_MS: "500" };
  node = new LocalNode(
    { id: "headroom-1", region: edge.regionId, simArgs: ["--max-concurrency", "2", "--inter-token-ms", "20"], backplaneEnv, simName: "sim", backplaneName: "backplane" },
    { root: ROOT, host: "127.0.0.1", gatewayUrl: edge.url, masterSecret: edge.nodeSigningSecret, echo: false, db, redis, redisPrefix },
  );
  await node.startSim();
  backplaneEnv.BACKPLANE_ENGINES = `kind=sim,id=sim-0,url=${node.simUrl},max-concurrency=2`;
  await node.startBackplane();
  await waitForNodes(edge, [node.id]);
  const res = await fetch(`${edge.url}/admin/keys`, {
    method: "POST",
    headers: { authorization: `Bearer ${edge.adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({ environment_id: edge.environmentId, name: "interactive", priority_class: "interactive" }),
  });
  expect(res.status).toBe(201);
  interactiveKey = ((await res.json()) as { key: string }).key;
}, 120_000);

afterAll(async () => {
  await node?.close();
  await db?.close();
  redis?.disconnect();
  await edge?.close();
});

const messages = [{ role: "user" as const, content: "Say something." }];
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A chat completion as a batch request through the official client; resolves with when it ended (ms since `t0`). */
async function batch(t0: number, extra: Record<string, unknown>): Promise<number> {
  const client = new OpenAI({ baseURL: `${edge.url}/v1`, apiKey: edge.apiKey, maxRetries: 0, defaultHeaders: { "x-switchyard-priority": "batch" } });
  // sim_ttft_ms is the simulator's per-request prefill time (docs/simulator.md).
  await client.chat.completions.create({ model: MODEL, messages, max_tokens: 3, ...extra } as OpenAI.ChatCompletionCreateParamsNonStreaming);
  return Date.now() - t0;
}

describe("class headroom at the edge queue", () => {
  // The first batch request must be in the node's heartbeat (every 500 ms) before the second arrives;
  // on a loaded machine one can come late, so the test may run up to three times after the engine is idle again.
  it("keeps the node's second slot for interactive: a later interactive request runs at once while a second batch request waits for the first", { retry: 2, timeout: 60_000 }, async () => {
    await pause(3_500);
    const t0 = Date.now();
    // Batch holds one of the two slots for about 2.5 s.
    const holder = batch(t0, { sim_ttft_ms: 2_500 });
    await pause(1_200);
    // 1 in flight: full for batch (target 2 less 2 × 25 %), not for interactive.
    const waiting = batch(t0, {});
    await pause(300);
    const client = new OpenAI({ baseURL: `${edge.url}/v1`, apiKey: interactiveKey, maxRetries: 0 });
    const started = Date.now();
    const answer = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 3 });
    const interactiveDoneAt = Date.now() - t0;
    expect(answer.choices[0]?.message.content).toBeTruthy();
    // It did not wait for the holder (the slot kept free was there for it).
    expect(Date.now() - started).toBeLessThan(700);
    const [holderDoneAt, waitingDoneAt] = await Promise.all([holder, waiting]);
    expect(interactiveDoneAt).toBeLessThan(holderDoneAt);
    // The second batch request waited at the gateway until the first ended, though a slot was free.
    expect(waitingDoneAt).toBeGreaterThan(holderDoneAt);
  });
});
