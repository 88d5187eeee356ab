/**
 * Chaos: Postgres unreachable for 30 s under load (the stack's connections to it cut at a proxy; the
 * machine's Postgres keeps running). `npm run chaos -- postgres-outage`.
 */
import { afterEach, describe, expect, it } from "vitest";
import { usageRecords } from "../../schema/tables/index.ts";
import { SCENARIO_TIMEOUT_MS, sleep, startChaosStack, type ChaosStack } from "./chaos-stack.ts";
import { nodeSummary } from "./gateway-view.ts";
import { Traffic } from "./traffic.ts";
import { expectExactUsage, report, settleUsage } from "./usage-check.ts";

const OUTAGE_MS = 30_000;

let running: ChaosStack | undefined;
afterEach(async () => {
  await running?.close();
  running = undefined;
});

async function rowCount(c: ChaosStack): Promise<number> {
  return (await c.db.db.select({ id: usageRecords.id }).from(usageRecords)).length;
}

describe("chaos: Postgres down", () => {
  it("Postgres down for 30 s: serving continues with no failed call; usage waits in Redis and every event reaches Postgres once it is back, exactly once", async () => {
    running = await startChaosStack("postgres", { proxyPostgres: true });
    const { stack, postgresProxy } = running;
    if (!postgresProxy) throw new Error("no Postgres proxy");
    const began = Date.now();
    const traffic = new Traffic({ gatewayUrl: stack.gatewayUrl, apiKey: stack.apiKey, callers: 3 }).start();
    await sleep(6_000);
    await stack.runScheduled();
    const downAt = Date.now();
    postgresProxy.set("refused");
    // The scheduled job runs during the outage too (as the minute's cron would): its flush fails and
    // the events stay queued.
    await sleep(5_000);
    const rowsEarlyInOutage = await rowCount(running);
    const cronDuringOutage = await stack.runScheduled().then(
      () => "ok",
      (err: unknown) => String(err),
    );
    await sleep(OUTAGE_MS - 5_000);
    const rowsLateInOutage = await rowCount(running);
    postgresProxy.set("up");
    const upAt = Date.now();
    await sleep(8_000);
    const calls = await traffic.stop();
    const verdict = await settleUsage(running, calls);
    report("Postgres down 30 s", (Date.now() - began) / 1000, calls, verdict, {
      outageSeconds: (upAt - downAt) / 1000,
      rowsWrittenDuringTheOutage: rowsLateInOutage - rowsEarlyInOutage,
      callsDuringTheOutage: calls.filter((c) => c.startedAt >= downAt && c.startedAt < upAt).length,
      scheduledJobDuringTheOutage: cronDuringOutage,
      nodesAtEnd: await nodeSummary(stack),
    });

    // Serving never needed Postgres.
    expect(calls.filter((c) => c.outcome !== "ok")).toEqual([]);
    expect(calls.filter((c) => c.startedAt >= downAt && c.startedAt < upAt).length).toBeGreaterThan(20);
    // The outage was real: nothing reached usage_records while it lasted.
    expect(rowsLateInOutage - rowsEarlyInOutage).toBe(0);
    expectExactUsage(verdict);
  }, SCENARIO_TIMEOUT_MS);
});
