/**
 * End to end: limits and budgets stay exact across isolates. Three plain workerd processes of one
 * deployment (one database, one Redis prefix) take 50 concurrent clients; a key's requests per
 * minute, a requests budget and a spend budget are each driven past exhaustion (bench/exactness.ts).
 * Not timed: it asserts counts, never latency.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { formatExactness, runExactness, type ExactnessResult, type ScenarioResult } from "../../bench/exactness.ts";
import { PG_ADMIN_URL, REDIS_URL } from "../support/fixtures.ts";

let result: ExactnessResult;

beforeAll(async () => {
  // runExactness starts and stops everything itself (database, Redis prefix, processes), on failure too.
  result = await runExactness({ pgAdminUrl: PG_ADMIN_URL, redisUrl: REDIS_URL, workerds: 3, concurrency: 50 });
  console.log(formatExactness(result));
}, 180_000);

function scenario(name: ScenarioResult["name"]): ScenarioResult {
  const found = result.scenarios.find((s) => s.name === name);
  if (!found) throw new Error(`no ${name} scenario in the result`);
  return found;
}

describe("admission across three workerd processes sharing one Redis", () => {
  it("admits at most a key's 100 requests per minute (plus the bucket's refill during the run) and at least 95 % of them", () => {
    const s = scenario("rpm");
    expect(s.limit).toBe(100);
    expect(s.allowed).toBe(100 + Math.floor(((s.durationMs / 1000) * 100) / 60));
    expect(s.errorSamples).toEqual([]);
    expect(s.admitted).toBeLessThanOrEqual(s.allowed);
    expect(s.admitted).toBeGreaterThanOrEqual(Math.ceil(0.95 * s.allowed));
    expect(s.refused).toBeGreaterThanOrEqual(50);
    expect(s.metered).toBe(s.admitted);
    expect(s.failures).toEqual([]);
  });

  it("admits exactly 10 requests on a requests budget of 10, however many are sent at once", () => {
    const s = scenario("requests");
    expect(s.errorSamples).toEqual([]);
    expect(s.admitted).toBe(10);
    expect(s.refused).toBeGreaterThanOrEqual(50);
    expect(s.counter).toBeLessThanOrEqual(10);
    expect(s.metered).toBe(10);
    expect(s.failures).toEqual([]);
  });

  it("records spend never above the spend budget and at least 95 % of it", () => {
    const s = scenario("spend");
    expect(s.limit).toBe(50 * result.requestCostMicros);
    expect(s.errorSamples).toEqual([]);
    expect(s.used).toBeLessThanOrEqual(s.limit);
    expect(s.used).toBeGreaterThanOrEqual(Math.ceil(0.95 * s.limit));
    expect(s.counter).toBeLessThanOrEqual(s.limit);
    expect(s.metered).toBe(s.admitted);
    expect(s.failures).toEqual([]);
  });

  it("admits through every workerd process", () => {
    for (let i = 0; i < result.workerds; i++) {
      expect(result.scenarios.some((s) => (s.admittedBy[i] ?? 0) > 0), `workerd ${i + 1} admitted nothing`).toBe(true);
    }
    expect(result.failures).toEqual([]);
    expect(result.passed).toBe(true);
  });
});

describe("the same with streams tapped by the nodes (STREAM_TAP=node)", () => {
  // Every usage row of a streamed request then waits on its node's report, asked for together with
  // the other streams that ended within 5 ms (worker/src/proxy/report-asks.ts): none may be lost.
  let nodeTapped: ExactnessResult;
  beforeAll(async () => {
    nodeTapped = await runExactness({ pgAdminUrl: PG_ADMIN_URL, redisUrl: REDIS_URL, workerds: 3, concurrency: 50, vars: { STREAM_TAP: "node" } });
    console.log(formatExactness(nodeTapped));
  }, 180_000);

  it("meters every admitted request and holds every limit", () => {
    for (const s of nodeTapped.scenarios) {
      expect(s.errorSamples, s.name).toEqual([]);
      expect(s.metered, s.name).toBe(s.admitted);
      expect(s.failures, s.name).toEqual([]);
    }
    expect(nodeTapped.passed).toBe(true);
  });
});
