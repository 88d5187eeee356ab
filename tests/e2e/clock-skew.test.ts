/**
 * End to end, the fast variant of the chaos suite's clock-skew scenario (tests/chaos/clock-skew.test.ts):
 * two nodes, the wall clock of one backplane stepped 2 minutes ahead (dev/fake-clock.ts, tests only),
 * a few seconds of traffic, the clock set right again.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fakeClockEnv, sleep, startChaosStack, twoNodeTopology, waitFor, type ChaosStack } from "../chaos/chaos-stack.ts";
import { adminNodes } from "../chaos/gateway-view.ts";
import { Traffic } from "../chaos/traffic.ts";
import { expectExactUsage, settleUsage } from "../chaos/usage-check.ts";

let running: ChaosStack;
let clockDir: string;
let clockFile: string;

beforeAll(async () => {
  clockDir = mkdtempSync(join(tmpdir(), "switchyard-e2e-clock-"));
  clockFile = join(clockDir, "offset-ms");
  writeFileSync(clockFile, "0");
  running = await startChaosStack("clocke2e", { topology: twoNodeTopology({ "chaos-2": { backplaneEnv: fakeClockEnv(clockFile) } }) });
}, 90_000);

afterAll(async () => {
  await running?.close();
  rmSync(clockDir, { recursive: true, force: true });
});

describe("a node whose clock is 2 minutes off", () => {
  it("has its heartbeats refused with a message naming the clock, goes stale and gets no traffic while clients see nothing, and rejoins once its clock is right", async () => {
    const { stack } = running;
    const node = running.node("chaos-2");
    writeFileSync(clockFile, String(120_000));
    expect(await waitFor(async () => (await adminNodes(stack)).some((n) => n.id === "chaos-2" && n.stale && !n.healthy), 10_000)).toBe(true);
    const staleAt = Date.now();

    const traffic = new Traffic({ gatewayUrl: stack.gatewayUrl, apiKey: stack.apiKey, callers: 3, intervalMs: 500, kinds: ["chat", "chat-stream"] }).start();
    await sleep(3_000);
    const calls = await traffic.stop();
    expect(calls.filter((c) => c.outcome !== "ok")).toEqual([]);
    const verdict = await settleUsage(running, calls, 20_000);
    expectExactUsage(verdict);
    expect([...verdict.rowsById.values()].filter((r) => r.at.getTime() >= staleAt && r.nodeId === "chaos-2")).toEqual([]);

    // The backplane says why, quoting the gateway's 401.
    const refusal = node.backplane.recentOutput().split("\n").find((line) => line.includes("heartbeat_failed")) ?? "";
    expect(refusal).toContain("HTTP 401");
    expect(refusal).toContain("signed more than 60 s away from the gateway's clock. Fix the node's clock (NTP).");

    writeFileSync(clockFile, "0");
    expect(await waitFor(async () => (await adminNodes(stack)).some((n) => n.id === "chaos-2" && n.healthy && !n.stale), 10_000)).toBe(true);
  }, 30_000);
});
