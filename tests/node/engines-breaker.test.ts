import { describe, expect, it } from "vitest";
import { CircuitBreaker } from "../../backplane/src/engines/breaker.ts";

function clocked(failures = 3, openMs = 1000) {
  const clock = { t: 10_000 };
  const breaker = new CircuitBreaker({ failures, openMs, now: () => clock.t });
  return { clock, breaker };
}

describe("circuit breaker", () => {
  it("stays closed and lets requests through until N consecutive failures, then opens", () => {
    const { breaker } = clocked(3);
    breaker.recordFailure();
    breaker.recordFailure();
    expect(breaker.state()).toBe("closed");
    expect(breaker.allowsRequests()).toBe(true);
    expect(breaker.consecutiveFailures()).toBe(2);
    breaker.recordFailure();
    expect(breaker.state()).toBe("open");
    expect(breaker.allowsRequests()).toBe(false);
  });

  it("counts only consecutive failures: a success in between resets the count", () => {
    const { breaker } = clocked(3);
    breaker.recordFailure();
    breaker.recordFailure();
    breaker.recordSuccess();
    expect(breaker.consecutiveFailures()).toBe(0);
    breaker.recordFailure();
    breaker.recordFailure();
    expect(breaker.state()).toBe("closed");
  });

  it("turns half_open once openMs passed, and still refuses requests until a probe decides", () => {
    const { clock, breaker } = clocked(1, 1000);
    breaker.recordFailure();
    clock.t += 999;
    expect(breaker.state()).toBe("open");
    expect(breaker.msUntilHalfOpen()).toBe(1);
    clock.t += 1;
    expect(breaker.state()).toBe("half_open");
    expect(breaker.msUntilHalfOpen()).toBe(0);
    expect(breaker.allowsRequests()).toBe(false);
  });

  it("closes on a successful probe while half_open", () => {
    const { clock, breaker } = clocked(1, 1000);
    breaker.recordFailure();
    clock.t += 1000;
    breaker.recordProbe(true);
    expect(breaker.state()).toBe("closed");
    expect(breaker.allowsRequests()).toBe(true);
    expect(breaker.consecutiveFailures()).toBe(0);
  });

  it("re-opens for another openMs on a failed probe while half_open", () => {
    const { clock, breaker } = clocked(1, 1000);
    breaker.recordFailure();
    clock.t += 1500;
    breaker.recordProbe(false);
    expect(breaker.state()).toBe("open");
    expect(breaker.msUntilHalfOpen()).toBe(1000);
    clock.t += 1000;
    expect(breaker.state()).toBe("half_open");
  });

  it("re-opens on a request failure while half_open", () => {
    const { clock, breaker } = clocked(2, 1000);
    breaker.recordFailure();
    breaker.recordFailure();
    clock.t += 1000;
    breaker.recordFailure();
    expect(breaker.state()).toBe("open");
    expect(breaker.msUntilHalfOpen()).toBe(1000);
  });

  it("ignores probes while open or closed, and late successes while open", () => {
    const { clock, breaker } = clocked(1, 1000);
    breaker.recordProbe(false);
    expect(breaker.state()).toBe("closed");
    breaker.recordFailure();
    breaker.recordProbe(true);
    breaker.recordSuccess();
    expect(breaker.state()).toBe("open");
    // A failure while already open does not push the deadline out.
    clock.t += 600;
    breaker.recordFailure();
    expect(breaker.msUntilHalfOpen()).toBe(400);
  });
});
