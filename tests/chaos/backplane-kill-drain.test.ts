/**
 * Chaos: one of two backplanes killed (SIGKILL, the host dies) and, separately, drained (SIGTERM)
 * under load, then started again. `npm run chaos -- backplane-kill-drain`.
 */
import { afterEach, describe, expect, it } from "vitest";
import { SCENARIO_TIMEOUT_MS, sleep, startChaosStack, waitFor, type ChaosStack } from "./chaos-stack.ts";
import { adminNodes, engineRunning, nodeSummary } from "./gateway-view.ts";
import { Traffic } from "./traffic.ts";
import { expectExactUsage, report, servedByNode, settleUsage } from "./usage-check.ts";

let running: ChaosStack | undefined;
afterEach(async () => {
  await running?.close();
  running = undefined;
});

// Routable: fresh, ready and its circuit closed in the gateway (after failures the circuit stays open BREAKER_COOLDOWN_MS, 30 s).
const healthy = (c: ChaosStack, id: string) => async () => (await adminNodes(c.stack)).some((n) => n.id === id && n.healthy && n.circuit === "closed");

describe("chaos: backplane killed or drained", () => {
  it("a backplane killed under load: calls it was answering end (streams in band, others 502), new calls fail over at once, it rejoins after a restart; usage exact", async () => {
    running = await startChaosStack("bpkill");
    const { stack } = running;
    const node = running.node("chaos-1");
    const began = Date.now();
    const traffic = new Traffic({ gatewayUrl: stack.gatewayUrl, apiKey: stack.apiKey, callers: 4, maxTokens: 48 }).start();
    await sleep(4_000);
    const busy = await waitFor(async () => (await engineRunning(node)) > 0, 15_000, 50);
    const killedAt = Date.now();
    node.backplane.process.kill("SIGKILL");
    const outOfRouting = await waitFor(async () => !(await healthy(running as ChaosStack, "chaos-1")()), 15_000);
    const outAt = Date.now();
    await sleep(5_000);
    await stack.startNode("chaos-1");
    const restartedAt = Date.now();
    const back = await waitFor(healthy(running, "chaos-1"), 60_000);
    const backAt = Date.now();
    await sleep(8_000);
    const calls = await traffic.stop();
    const verdict = await settleUsage(running, calls);
    const served = servedByNode(verdict, { "before the kill": [began, killedAt], "backplane down": [killedAt, restartedAt], "after the restart": [restartedAt, Date.now()] });
    report("backplane killed", (Date.now() - began) / 1000, calls, verdict, {
      engineBusyWhenKilled: busy,
      outOfRoutingSecondsAfterKill: (outAt - killedAt) / 1000,
      routableSecondsAfterRestart: (backAt - restartedAt) / 1000,
      served,
      nodesAtEnd: await nodeSummary(stack),
    });

    expectExactUsage(verdict);
    const failed = calls.filter((c) => c.outcome !== "ok");
    // Only what the dead backplane was answering is lost to its callers: a stream ends with the
    // gateway's in-band error event, a non-streamed answer that broke off is a 502, never a truncated 200.
    expect(failed.filter((c) => !(c.outcome.startsWith("stream cut") || c.outcome === "HTTP 502 upstream_error"))).toEqual([]);
    expect(failed.filter((c) => c.startedAt > killedAt)).toEqual([]);
    expect(outOfRouting).toBe(true);
    expect(back).toBe(true);
    expect(served["after the restart"]?.["chaos-1"] ?? 0).toBeGreaterThan(0);
  }, SCENARIO_TIMEOUT_MS);

  it("a backplane drained under load: every call succeeds, the node leaves routing, and it rejoins after a restart; usage exact", async () => {
    running = await startChaosStack("bpdrain");
    const { stack } = running;
    const node = running.node("chaos-1");
    const began = Date.now();
    const traffic = new Traffic({ gatewayUrl: stack.gatewayUrl, apiKey: stack.apiKey, callers: 4, maxTokens: 48 }).start();
    await sleep(4_000);
    const busy = await waitFor(async () => (await engineRunning(node)) > 0, 15_000, 50);
    const drainedAt = Date.now();
    await stack.stopNode("chaos-1");
    const exitedAt = Date.now();
    const outOfRouting = await waitFor(async () => !(await healthy(running as ChaosStack, "chaos-1")()), 15_000);
    await sleep(4_000);
    await stack.startNode("chaos-1");
    const restartedAt = Date.now();
    const back = await waitFor(healthy(running, "chaos-1"), 60_000);
    const backAt = Date.now();
    await sleep(8_000);
    const calls = await traffic.stop();
    const verdict = await settleUsage(running, calls);
    const served = servedByNode(verdict, { "before the drain": [began, drainedAt], "drained": [exitedAt, restartedAt], "after the restart": [restartedAt, Date.now()] });
    report("backplane drained", (Date.now() - began) / 1000, calls, verdict, {
      engineBusyWhenDrained: busy,
      drainSeconds: (exitedAt - drainedAt) / 1000,
      routableSecondsAfterRestart: (backAt - restartedAt) / 1000,
      served,
      nodesAtEnd: await nodeSummary(stack),
    });

    expectExactUsage(verdict);
    // A drain finishes what the node accepted and sends new calls elsewhere: clients see nothing.
    expect(calls.filter((c) => c.outcome !== "ok")).toEqual([]);
    expect(outOfRouting).toBe(true);
    expect(served.drained?.["chaos-1"] ?? 0).toBe(0);
    expect(back).toBe(true);
    expect(served["after the restart"]?.["chaos-1"] ?? 0).toBeGreaterThan(0);
  }, SCENARIO_TIMEOUT_MS);
});
