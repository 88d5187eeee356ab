/**
 * Chaos: one of two backplanes' clocks jumps 2 minutes ahead under load (dev/fake-clock.ts, a test-only
 * preload shifting the process's wall clock) and is corrected later. `npm run chaos -- clock-skew`.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { SCENARIO_TIMEOUT_MS, fakeClockEnv, sleep, startChaosStack, twoNodeTopology, waitFor, type ChaosStack } from "./chaos-stack.ts";
import { adminNodes, nodeSummary } from "./gateway-view.ts";
import { Traffic } from "./traffic.ts";
import { expectExactUsage, report, servedByNode, settleUsage } from "./usage-check.ts";

const SKEW_MS = 120_000;

let running: ChaosStack | undefined;
let clockDir: string | undefined;
afterEach(async () => {
  await running?.close();
  running = undefined;
  if (clockDir) rmSync(clockDir, { recursive: true, force: true });
  clockDir = undefined;
});

const routable = (c: ChaosStack, id: string) => async () => (await adminNodes(c.stack)).some((n) => n.id === id && n.healthy && n.circuit === "closed");

describe("chaos: clock skew", () => {
  it("a backplane whose clock is 2 minutes ahead: the gateway refuses its heartbeats saying the clock is off, it goes stale and out of routing, clients see nothing; fixed, it rejoins; usage exact", async () => {
    clockDir = mkdtempSync(join(tmpdir(), "switchyard-chaos-clock-"));
    const clockFile = join(clockDir, "offset-ms");
    writeFileSync(clockFile, "0");
    running = await startChaosStack("clock", {
      topology: twoNodeTopology({
        "chaos-2": { backplaneEnv: fakeClockEnv(clockFile) },
      }),
    });
    const { stack } = running;
    const node = running.node("chaos-2");
    const began = Date.now();
    const traffic = new Traffic({ gatewayUrl: stack.gatewayUrl, apiKey: stack.apiKey, callers: 3 }).start();
    await sleep(5_000);
    const skewedAt = Date.now();
    writeFileSync(clockFile, String(SKEW_MS));
    const stale = await waitFor(async () => (await adminNodes(stack)).some((n) => n.id === "chaos-2" && n.stale && !n.healthy), 20_000);
    const staleAt = Date.now();
    await sleep(10_000);
    const logWhileSkewed = node.backplane.recentOutput();
    const fixedAt = Date.now();
    writeFileSync(clockFile, "0");
    const back = await waitFor(routable(running, "chaos-2"), 30_000);
    const backAt = Date.now();
    await sleep(6_000);
    const calls = await traffic.stop();
    const verdict = await settleUsage(running, calls);
    const served = servedByNode(verdict, { "before the skew": [began, skewedAt], "skewed, node stale": [staleAt, fixedAt], "after the fix": [backAt, Date.now()] });
    const refusal = logWhileSkewed.split("\n").find((line) => line.includes("heartbeat_failed")) ?? "";
    report("clock skew", (Date.now() - began) / 1000, calls, verdict, {
      staleSecondsAfterSkew: (staleAt - skewedAt) / 1000,
      routableSecondsAfterFix: (backAt - fixedAt) / 1000,
      backplaneLog: refusal.slice(0, 400),
      served,
      nodesAtEnd: await nodeSummary(stack),
    });

    // The node's log says why: the gateway answered its heartbeat 401, naming the clock.
    expect(refusal).toMatch(/HTTP 401/);
    expect(refusal).toMatch(/signed more than 60 s away from the gateway's clock\. Fix the node's clock \(NTP\)/);
    expect(stale).toBe(true);
    expect(served["skewed, node stale"]?.["chaos-2"] ?? 0).toBe(0);
    // The skewed node also refuses the gateway's signatures, and the gateway tries the other node:
    // clients see nothing.
    expect(calls.filter((c) => c.outcome !== "ok")).toEqual([]);
    expectExactUsage(verdict);
    expect(back).toBe(true);
    expect(served["after the fix"]?.["chaos-2"] ?? 0).toBeGreaterThan(0);
  }, SCENARIO_TIMEOUT_MS);
});
