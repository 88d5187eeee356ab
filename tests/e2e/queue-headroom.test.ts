/**
 * End to end: class headroom in the edge queue (QUEUE_CLASS_HEADROOM_PERCENT, docs/priority.md) on
 * plain workerd with one backplane in front of one simulated engine that runs two requests at once.
 * With an in-flight target of 2 and 25 % headroom, batch counts the node full at 1: while one batch
 * request runs, a second batch request waits at the gateway and an interactive one arriving after it
 * takes the free slot at once; the waiting batch request runs once the first ends.
 */
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Edge } from "../../bench/lib/edge.ts";
import { startEdgeWithNode, type EdgeWithNode } from "../support/edge-node.ts";

const MODEL = "sim-llama-8b";
let stack: EdgeWithNode;
let edge: Edge;
let interactiveKey: string;

beforeAll(async () => {
  // The probe (a waiter let through when no slot frees for this long) is pushed out of the test's way.
  stack = await startEdgeWithNode("headroom", { slots: 2, vars: { EDGE_QUEUE_MAX_WAIT_MS: "8000", EDGE_QUEUE_RECHECK_MS: "30000", QUEUE_INFLIGHT_TARGET: "2", QUEUE_CLASS_HEADROOM_PERCENT: "25" } });
  ({ edge, interactiveKey } = stack);
}, 120_000);

afterAll(async () => {
  await stack?.close();
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
