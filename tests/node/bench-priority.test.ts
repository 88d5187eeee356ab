import { describe, expect, it } from "vitest";
import { formatPriority, maxMinShares, priorityTargets, type PriorityBenchResult } from "../../bench/priority.ts";

// The mixed-priority benchmark's arithmetic (bench/priority.ts): fair shares and the targets' verdicts.

describe("mixed-priority benchmark", () => {
  it("shares capacity max-min: small demands are met in full, the rest split what is left evenly", () => {
    expect(maxMinShares([50, 25, 25], 100)).toEqual([0.5, 0.25, 0.25]);
    const [a, b, c] = maxMinShares([60, 30, 10], 60);
    expect(c).toBeCloseTo(10 / 60);
    expect(a).toBeCloseTo(25 / 60);
    expect(b).toBeCloseTo(25 / 60);
    expect(maxMinShares([0, 0], 0)).toEqual([0, 0]);
  });

  it("reports the targets beside the measured values, met or not", () => {
    const result: PriorityBenchResult = {
      engine: "sim",
      nodes: 1,
      slots: 4,
      serviceMs: 170,
      offeredRps: 35,
      servedRps: 18.8,
      capacityRps: 23.5,
      load: 1.5,
      durationSec: 5,
      layers: "edge queue",
      idle: { requests: 15, ttftP50Ms: 50, ttftP90Ms: 60 },
      classes: [
        { class: "interactive", sent: 40, completed: 40, refused: 0, errors: 0, ttftP50Ms: 80, ttftP90Ms: 150 },
        { class: "batch", sent: 120, completed: 100, refused: 20, errors: 0, ttftP50Ms: 2000, ttftP90Ms: 4000 },
      ],
      tenants: [
        { tenant: "a", offered: 0.5, completed: 70, share: 0.5, fairShare: 0.45 },
        { tenant: "b", offered: 0.25, completed: 35, share: 0.25, fairShare: 0.3 },
        { tenant: "c", offered: 0.25, completed: 35, share: 0.25, fairShare: 0.25 },
      ],
      errors: [],
    };
    const [ttft, fairness] = priorityTargets(result);
    expect(ttft).toMatchObject({ met: false, measured: "150 ms vs 60 ms idle (2.50×); batch p90 4000 ms, 20 of 120 refused" });
    expect(fairness).toMatchObject({ met: false, measured: "lowest: tenant b 25.0 % vs fair 30.0 % (-16.7 %)" });
    const fine = priorityTargets({ ...result, classes: [{ ...result.classes[0], ttftP90Ms: 110 } as PriorityBenchResult["classes"][number]], tenants: result.tenants.map((t) => ({ ...t, fairShare: t.share })) });
    expect(fine.map((t) => t.met)).toEqual([true, true]);
    expect(priorityTargets(null)).toEqual([]);
    // The report says what the fleet served under load against its capacity (the cost of the headroom).
    expect(formatPriority(result)).toContain("Served under load: 18.8 requests per second, 80 % of the 23.5");
  });
});
