/**
 * The serve process's Cron Triggers (worker/selfhost/cron.ts): one scheduled event a minute, on the
 * minute (UTC), `0 * * * *` at the top of the hour, a minute skipped while the previous run goes on.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { cronFor, CronScheduler, HOURLY_CRON, MINUTE_CRON, msToNextMinute } from "../../worker/selfhost/cron.ts";

type Logged = { level: string; event: string; fields: Record<string, unknown> };

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

function scheduler(run: (cron: string, at: Date) => Promise<unknown>, intervalMs: number | null = null) {
  const logged: Logged[] = [];
  const cron = new CronScheduler({ run, log: (level, event, fields) => logged.push({ level, event, fields }), intervalMs });
  return { cron, logged };
}

describe("the self-hosted gateway's cron", () => {
  it("names the hourly cron at minute 0 and the every-minute one otherwise, in UTC", () => {
    expect(cronFor(new Date("2026-12-07T18:00:00Z"))).toBe(HOURLY_CRON);
    expect(cronFor(new Date("2026-12-07T18:01:00Z"))).toBe(MINUTE_CRON);
    expect(cronFor(new Date("2026-12-07T18:59:00Z"))).toBe(MINUTE_CRON);
    expect(msToNextMinute(Date.parse("2026-12-07T18:00:59.250Z"))).toBe(750);
    expect(msToNextMinute(Date.parse("2026-12-07T18:01:00.000Z"))).toBe(60_000);
  });

  it("fires on the minute with the right cron string and logs each run", async () => {
    vi.setSystemTime(new Date("2026-12-07T17:58:30Z"));
    const fired: { cron: string; at: string }[] = [];
    const { cron, logged } = scheduler((c, at) => {
      fired.push({ cron: c, at: at.toISOString() });
      return Promise.resolve();
    });
    cron.start();
    await vi.advanceTimersByTimeAsync(29_999);
    expect(fired).toEqual([]);
    await vi.advanceTimersByTimeAsync(1 + 60_000 + 60_000);
    expect(fired).toEqual([
      { cron: MINUTE_CRON, at: "2026-12-07T17:59:00.000Z" },
      { cron: HOURLY_CRON, at: "2026-12-07T18:00:00.000Z" },
      { cron: MINUTE_CRON, at: "2026-12-07T18:01:00.000Z" },
    ]);
    expect(logged.map((l) => [l.level, l.event, l.fields.cron])).toEqual([
      ["info", "cron.done", MINUTE_CRON],
      ["info", "cron.done", HOURLY_CRON],
      ["info", "cron.done", MINUTE_CRON],
    ]);
    await cron.close();
  });

  it("skips a minute while the previous run is still going, logs failures, and close() waits for the run", async () => {
    vi.setSystemTime(new Date("2026-12-07T17:00:30Z"));
    let release = () => {};
    let calls = 0;
    const { cron, logged } = scheduler(() => {
      calls++;
      if (calls === 1) return new Promise<void>((r) => (release = r));
      return Promise.reject(new Error("database unreachable"));
    });
    cron.start();
    await vi.advanceTimersByTimeAsync(30_000 + 60_000); // 17:01 starts a slow run; 17:02 finds it going
    expect(calls).toBe(1);
    expect(logged).toEqual([{ level: "warn", event: "cron.skipped", fields: expect.objectContaining({ cron: MINUTE_CRON, reason: "the previous run is still going" }) as unknown }]);
    release();
    await vi.advanceTimersByTimeAsync(60_000); // 17:03 runs and fails
    expect(calls).toBe(2);
    expect(logged.at(-1)).toMatchObject({ level: "error", event: "cron.failed", fields: { cron: MINUTE_CRON, error: "database unreachable" } });

    let finished = false;
    const { cron: slow } = scheduler(
      () =>
        new Promise<void>((r) =>
          setTimeout(() => {
            finished = true;
            r();
          }, 5_000),
        ),
      1_000,
    );
    slow.start();
    await vi.advanceTimersByTimeAsync(1_000);
    const closed = slow.close();
    await vi.advanceTimersByTimeAsync(5_000);
    await closed;
    expect(finished).toBe(true);
    await cron.close();
  });
});
