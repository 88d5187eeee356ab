/**
 * End to end, the fast variant of the chaos suite's partition scenario (tests/chaos/partition.test.ts):
 * one of two backplanes cut off from the gateway in both directions for 5 s under light traffic.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sleep, startPartitionableStack, waitFor, type PartitionableStack } from "../chaos/chaos-stack.ts";
import { adminNodes } from "../chaos/gateway-view.ts";
import { Traffic } from "../chaos/traffic.ts";
import { expectExactUsage, servedByNode, settleUsage } from "../chaos/usage-check.ts";

let running: PartitionableStack;

beforeAll(async () => {
  running = await startPartitionableStack("partitione2e", 2_000);
}, 90_000);

afterAll(async () => {
  await running?.close();
});

describe("a backplane cut off from the gateway", () => {
  it("goes stale and out of routing; calls started after the cut are served by the other node; once healed it heartbeats again; usage exact", async () => {
    const { stack } = running;
    const traffic = new Traffic({ gatewayUrl: stack.gatewayUrl, apiKey: stack.apiKey, callers: 3, intervalMs: 500, kinds: ["chat", "chat-stream", "embedding"], timeoutMs: 20_000 }).start();
    await sleep(1_500);
    const cutAt = Date.now();
    running.partition();
    expect(await waitFor(async () => (await adminNodes(stack)).some((n) => n.id === "chaos-2" && n.stale && !n.healthy), 10_000)).toBe(true);
    const staleAt = Date.now();
    await sleep(Math.max(0, cutAt + 5_000 - Date.now()));
    running.heal();
    const healedAt = Date.now();
    const calls = await traffic.stop();
    expect(await waitFor(async () => (await adminNodes(stack)).some((n) => n.id === "chaos-2" && !n.stale), 10_000)).toBe(true);

    // Only what the cut-off node was already answering can fail: a stream ends in band, a
    // non-streamed call with a 502.
    const failed = calls.filter((c) => c.outcome !== "ok");
    expect(failed.filter((c) => !(c.outcome.startsWith("stream cut") || c.outcome === "HTTP 502 upstream_error") || c.startedAt > cutAt)).toEqual([]);
    const verdict = await settleUsage(running, calls, 20_000);
    expectExactUsage(verdict);
    expect(servedByNode(verdict, { stale: [staleAt, healedAt] }).stale?.["chaos-2"] ?? 0).toBe(0);
  }, 30_000);
});
