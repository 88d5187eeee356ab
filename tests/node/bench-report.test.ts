/**
 * The benchmark's distance rows as a reader of the report sees them: the flag that picks the write
 * RTTs, the admission counters read from /admin/metrics, and the targets checked on them.
 */
import { describe, expect, it } from "vitest";
import { parseBenchArgs, UsageError } from "../../bench/args.ts";
import type { CompareResult, LatencyRow } from "../../bench/compare.ts";
import { parseAdmissions } from "../../bench/lib/distance.ts";
import { checkTargets, distanceRows, formatReport, machineInfo, type BenchReport } from "../../bench/report.ts";

describe("npm run bench -- --redis-write-rtts", () => {
  it("measures the full path at 0, 20 and 80 ms by default and at 0 and 80 ms in quick mode", () => {
    expect(parseBenchArgs([])?.redisWriteRtts).toEqual([0, 20, 80]);
    expect(parseBenchArgs(["--quick"])?.redisWriteRtts).toEqual([0, 80]);
  });

  it("always includes 0, sorted and without repeats", () => {
    expect(parseBenchArgs(["--redis-write-rtts", "160, 40,40"])?.redisWriteRtts).toEqual([0, 40, 160]);
  });

  it("refuses what is not whole milliseconds up to 1000", () => {
    for (const bad of ["80ms", "-1", "2000", "0,,80"]) {
      expect(() => parseBenchArgs(["--redis-write-rtts", bad])).toThrow(UsageError);
    }
  });
});

describe("admission counters from GET /admin/metrics", () => {
  it("adds up local and redis admissions whatever the label order and other labels", () => {
    const text = [
      "# HELP switchyard_admissions_total Requests admitted, by path.",
      "# TYPE switchyard_admissions_total counter",
      'switchyard_admissions_total{path="local"} 120',
      'switchyard_admissions_total{kind="stream",path="redis"} 2',
      'switchyard_admissions_total{path="redis", kind="nonstream"} 1',
      'switchyard_limits_fail_open_total{check="rate"} 7',
    ].join("\n");
    expect(parseAdmissions(text)).toEqual({ local: 120, redis: 3 });
  });

  it("counts zero before the first request and nothing when the gateway has no such counter", () => {
    expect(parseAdmissions("switchyard_admissions_total 0\n")).toEqual({ local: 0, redis: 0 });
    expect(parseAdmissions('# HELP switchyard_limits_fail_open_total x\nswitchyard_limits_fail_open_total{check="rate"} 0\n')).toBeNull();
  });
});

/** A latency row with the same first- and last-byte figures. */
function row(p50: number, p99: number): LatencyRow {
  return { firstByte: { p50, p99 }, lastByte: { p50, p99 }, samples: 100 };
}

function compareResult(admissions: { local: number; redis: number } | null): CompareResult {
  const latency = { engine: row(1, 2), backplane: row(3, 5), "hono-workerd": row(2.5, 4), switchyard: row(5, 9), "switchyard-rtt80": row(5.5, 60) };
  const cpu = (workerd: number) => ({ requests: 1000, rps: 500, p50Ms: 10, p99Ms: 20, cpuMsPerRequest: { hop: workerd + 0.5, workerd } });
  const throughput = { switchyard: cpu(0.9), "switchyard-rtt80": cpu(1), "hono-workerd": { ...cpu(0), cpuMsPerRequest: { hop: 0.5 } } };
  return {
    targets: Object.keys(latency).map((name) => ({ name, description: name })),
    skipped: [],
    latency: { nonstream: latency, stream: latency },
    throughput: { nonstream: throughput, stream: throughput },
    correctness: { nonstream: {}, stream: {} },
    distance: [
      { writeRttMs: 0, target: "switchyard", admissions: { probe: { nonstream: admissions, stream: admissions }, load: { nonstream: admissions, stream: admissions } } },
      { writeRttMs: 80, target: "switchyard-rtt80", admissions: { probe: { nonstream: admissions, stream: admissions }, load: { nonstream: admissions, stream: admissions } } },
    ],
    errors: [],
  };
}

describe("the distance targets", () => {
  it("checks the 80 ms run against the 0 ms run and reports how many requests waited on Redis", () => {
    const checks = checkTargets(compareResult({ local: 995, redis: 5 }), null);
    const byGoal = (start: string) => checks.find((c) => c.goal.startsWith(start));
    expect(byGoal("at 80 ms write RTT: streaming first byte added, p50")).toEqual({ goal: expect.any(String) as unknown, measured: "+0.50 ms (4.50 vs 4.00)", met: true });
    expect(byGoal("at 80 ms write RTT: streaming first byte added, p99")).toMatchObject({ measured: "+51.00 ms (58.00 vs 7.00)", met: true });
    expect(byGoal("at 80 ms write RTT: requests that waited on Redis")).toMatchObject({ measured: "0.5 % (probe 0.5 %, wrk 0.5 %)", met: true });
    // 4 − 2 − 1.5 added over the engine.
    expect(byGoal("0 ms write RTT: policy overhead on streaming first byte")).toMatchObject({ measured: "0.50 ms", met: true });
    expect(byGoal("nonstream, 0 ms write RTT: worker CPU per request")).toMatchObject({ measured: "1.80 ×", met: true });
  });

  it("says n/a, without failing, when the gateway does not count admissions", () => {
    const compare = compareResult(null);
    const waited = checkTargets(compare, null).find((c) => c.goal.includes("waited on Redis"));
    expect(waited).toMatchObject({ measured: "n/a (the gateway does not count admissions)", met: null });
    const report: BenchReport = {
      generatedAt: "2026-01-01T00:00:00.000Z",
      machine: machineInfo(),
      settings: { ...(parseBenchArgs(["--quick"]) ?? expect.fail("no args")), outputTokens: 16 },
      compare,
      distance: distanceRows(compare),
      routing: null,
      exactness: null,
      targets: checkTargets(compare, null),
    };
    const md = formatReport(report);
    expect(md).toContain("## Distance to the Redis primary");
    expect(md).toContain("| 80 ms | switchyard-rtt80 | 4.50 | 58.00 | 4.50 | 58.00 | n/a | n/a | 1.000 | 1.000 |");
  });
});
