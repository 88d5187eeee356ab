/**
 * End to end: a client that gives up before the first token frees its concurrency slot and the
 * engine's work within about a second. The worker runs on plain workerd (the runtime Cloudflare
 * runs; bench/lib/edge.ts) with a backplane and a simulated engine whose prefill is made long per
 * request.
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
const redisPrefix = `sy:e2e-cancel:${suffix}:`;
let edge: Edge;
let node: LocalNode;
let db: NodeDb;
let redis: Redis;

beforeAll(async () => {
  // One request in flight per key: a slot still held after the cancel shows as a 429 for the next request.
  edge = await startEdge({ pgAdminUrl: PG_ADMIN_URL, redisUrl: REDIS_URL, redisPrefix, databaseName: `sy_e2e_cancel_${suffix}`, vars: { LIMIT_KEY_CONCURRENCY: "1" } });
  db = openDb(edge.databaseUrl);
  redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  redis.on("error", () => {});
  node = new LocalNode(
    { id: "cancel-1", region: edge.regionId, simArgs: [], backplaneEnv: { BACKPLANE_HEARTBEAT_INTERVAL_MS: "1000" }, simName: "sim", backplaneName: "backplane" },
    { root: ROOT, host: "127.0.0.1", gatewayUrl: edge.url, masterSecret: edge.nodeSigningSecret, echo: false, db, redis, redisPrefix },
  );
  await node.startSim();
  await node.startBackplane();
  await waitForNodes(edge, [node.id]);
}, 90_000);

afterAll(async () => {
  await node?.close();
  await db?.close();
  redis?.disconnect();
  await edge?.close();
});

const messages = [{ role: "user" as const, content: "Say something." }];

async function engineAborts(): Promise<number> {
  const text = await (await fetch(`${node.simUrl}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith("vllm:request_success_total") && l.includes('finished_reason="abort"'));
  return line ? Number(line.split(" ").at(-1)) : 0;
}

describe("a client that cancels before the first token", () => {
  // Streamed: workerd notices the hang-up at the next keep-alive comment (STREAM_KEEPALIVE_MS). A
  // non-streamed request writes nothing before its answer, so only request.signal can tell, which
  // Cloudflare raises on a client disconnect and plain workerd does not (docs/limits.md).
  it("frees the key's concurrency slot and the engine's work within two keep-alive intervals (streamed)", async () => {
    const client = new OpenAI({ baseURL: `${edge.url}/v1`, apiKey: edge.apiKey, maxRetries: 0 });
    const abortsBefore = await engineAborts();
    const controller = new AbortController();
    // sim_ttft_ms: the simulated engine's prefill for this request (10 s, like a very long prompt).
    const slow = client.chat.completions
      .create({ model: "sim-llama-8b", messages, max_tokens: 5, stream: true, sim_ttft_ms: 10_000 } as OpenAI.ChatCompletionCreateParamsStreaming, { signal: controller.signal })
      .then(async (chunks) => {
        // The stream is committed early (keep-alive comments), so create() resolves; reading then fails.
        for await (const chunk of chunks) void chunk;
      });
    await new Promise((r) => setTimeout(r, 700));
    controller.abort();
    await expect(slow).rejects.toThrow();
    const cancelledAt = Date.now();

    // The next request gets the slot long before the cancelled one's first token would have come.
    let answered: number | null = null;
    while (Date.now() - cancelledAt < 5_000) {
      const res = await fetch(`${edge.url}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${edge.apiKey}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "sim-llama-8b", messages, max_tokens: 1 }),
      });
      await res.arrayBuffer();
      if (res.status === 200) {
        answered = Date.now() - cancelledAt;
        break;
      }
      expect(res.status).toBe(429);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(answered).not.toBeNull();
    expect(answered).toBeLessThan(3_000);
    // The engine aborted the cancelled request instead of prefilling it to the end.
    const deadline = Date.now() + 2_000;
    while ((await engineAborts()) <= abortsBefore && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(await engineAborts()).toBe(abortsBefore + 1);
  });
});
