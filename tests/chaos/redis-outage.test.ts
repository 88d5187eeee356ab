/**
 * Chaos: Redis unreachable for 20 s under load (the stack's connection to it cut at a proxy; the
 * machine's Redis keeps running). `npm run chaos -- redis-outage`.
 */
import { afterEach, describe, expect, it } from "vitest";
import { SCENARIO_TIMEOUT_MS, sleep, startChaosStack, type ChaosStack } from "./chaos-stack.ts";
import { budgetedKey, nodeSummary } from "./gateway-view.ts";
import { outcomes, startedBetween, Traffic } from "./traffic.ts";
import { expectExactUsage, report, settleUsage } from "./usage-check.ts";

const OUTAGE_MS = 20_000;

let running: ChaosStack | undefined;
afterEach(async () => {
  await running?.close();
  running = undefined;
});

describe("chaos: Redis down", () => {
  it("Redis down for 20 s: a key without budgets is served throughout (rate limits fail open) but for a blip of 503 no_capacity as Redis returns; a budgeted key is served from its lease, then refused 503 dependency_unavailable (fail closed) until Redis is back; no usage event is lost", async () => {
    running = await startChaosStack("redis", { proxyRedis: true });
    const { stack, redisProxy } = running;
    if (!redisProxy) throw new Error("no Redis proxy");
    const budgeted = await budgetedKey(stack, 50_000_000);
    await stack.runScheduled(); // the active-key set learns the new key
    const began = Date.now();
    const open = new Traffic({ gatewayUrl: stack.gatewayUrl, apiKey: stack.apiKey, callers: 3 }).start();
    const closed = new Traffic({ gatewayUrl: stack.gatewayUrl, apiKey: budgeted, callers: 1, kinds: ["chat", "chat-stream", "completion"] }).start();
    await sleep(6_000);
    const downAt = Date.now();
    redisProxy.set("refused");
    await sleep(OUTAGE_MS);
    redisProxy.set("up");
    const upAt = Date.now();
    await sleep(12_000);
    const [openCalls, closedCalls] = await Promise.all([open.stop(), closed.stop()]);
    const calls = [...openCalls, ...closedCalls];
    const verdict = await settleUsage(running, calls);
    report("Redis down 20 s", (Date.now() - began) / 1000, calls, verdict, {
      keyWithoutBudget: outcomes(openCalls),
      budgetedKey: {
        beforeTheOutage: outcomes(startedBetween(closedCalls, began, downAt)),
        duringTheOutage: outcomes(startedBetween(closedCalls, downAt, upAt)),
        after: outcomes(startedBetween(closedCalls, upAt, Date.now())),
      },
      keyWithoutBudgetFailures: openCalls.filter((c) => c.outcome !== "ok").map((c) => `${c.outcome}: started ${((c.startedAt - upAt) / 1000).toFixed(2)} s, ended ${((c.endedAt - upAt) / 1000).toFixed(2)} s after Redis was back`),
      nodesAtEnd: await nodeSummary(stack),
    });

    expectExactUsage(verdict);
    // Fail open: the key without budgets is served throughout, except for a blip as Redis returns:
    // its node liveness entries were last written before the outage (every heartbeat in between
    // failed), so the first reads after it see every node stale and answer 503 no_capacity with
    // Retry-After, until the nodes' next heartbeats land (a failed beat is retried after 1 s).
    const blip = openCalls.filter((c) => c.outcome !== "ok");
    expect(blip.filter((c) => c.outcome !== "HTTP 503 no_capacity" || c.endedAt < upAt - 1_000 || c.startedAt > upAt + 3_000)).toEqual([]);
    // Fail closed: the budgeted key is refused with 503 dependency_unavailable once its lease is spent,
    // and with nothing else; it is served again once Redis is back.
    const refused = closedCalls.filter((c) => c.outcome !== "ok");
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.filter((c) => c.outcome !== "HTTP 503 dependency_unavailable")).toEqual([]);
    expect(refused.filter((c) => c.startedAt < downAt || c.startedAt > upAt + 3_000)).toEqual([]);
    expect(startedBetween(closedCalls, upAt + 3_000, Date.now()).length).toBeGreaterThan(0);
  }, SCENARIO_TIMEOUT_MS);
});
