/**
 * The Cron Triggers of wrangler.toml (`* * * * *` and `0 * * * *`), fired by the serve process:
 * workerd runs no Cron Triggers by itself. Once a minute, on the minute (UTC), one scheduled event
 * with the cron string Cloudflare would give it: `0 * * * *` at the top of the hour (the worker's
 * job then does the minute's work and the hourly work, worker/src/jobs/scheduled.ts), else
 * `* * * * *`. A run still going at the next minute makes that minute skipped, not queued.
 */

/** Every-minute and hourly crons of wrangler.toml `[triggers]`. */
export const MINUTE_CRON = "* * * * *";
export const HOURLY_CRON = "0 * * * *";

/** The cron string of the event due at `at` (UTC, like Cloudflare's Cron Triggers). */
export function cronFor(at: Date): string {
  return at.getUTCMinutes() === 0 ? HOURLY_CRON : MINUTE_CRON;
}

/** Milliseconds from `now` to the next whole minute (a full minute when exactly on one). */
export function msToNextMinute(now: number): number {
  return 60_000 - (now % 60_000);
}

/** One line of the scheduler's log. */
export type CronLog = (level: "info" | "warn" | "error", event: string, fields: Record<string, unknown>) => void;

/** Options of `CronScheduler`. */
export interface CronOptions {
  /** Fires one scheduled event and resolves when it is done. */
  run: (cron: string, scheduledTime: Date) => Promise<unknown>;
  log: CronLog;
  /** Test-only: fire `* * * * *` every this many ms instead of on the minute. */
  intervalMs?: number | null;
  now?: () => number;
}

/** Fires the crons until `close()`. */
export class CronScheduler {
  private readonly opts: CronOptions;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private closed = false;
  private closing: Promise<void> | null = null;

  constructor(opts: CronOptions) {
    this.opts = opts;
  }

  /** Schedules the next tick; call once. */
  start(): void {
    this.schedule();
  }

  /** Fires one event now (skipped when one is running), as a tick would. */
  async tick(cron: string, scheduledTime: Date): Promise<void> {
    if (this.running !== null) {
      this.opts.log("warn", "cron.skipped", { cron, scheduled_time: scheduledTime.toISOString(), reason: "the previous run is still going" });
      return;
    }
    const started = Date.now();
    const run = (async () => {
      try {
        await this.opts.run(cron, scheduledTime);
        this.opts.log("info", "cron.done", { cron, scheduled_time: scheduledTime.toISOString(), duration_ms: Date.now() - started });
      } catch (err) {
        this.opts.log("error", "cron.failed", { cron, scheduled_time: scheduledTime.toISOString(), duration_ms: Date.now() - started, error: err instanceof Error ? err.message : String(err) });
      }
    })();
    this.running = run;
    try {
      await run;
    } finally {
      this.running = null;
    }
  }

  private schedule(): void {
    if (this.closed) return;
    const now = (this.opts.now ?? Date.now)();
    const interval = this.opts.intervalMs ?? null;
    const delay = interval ?? msToNextMinute(now);
    this.timer = setTimeout(() => {
      const at = interval === null ? new Date(now + delay) : new Date();
      // The next tick is planned before this one runs, so a slow run makes the next minute skipped rather than late.
      this.schedule();
      void this.tick(interval === null ? cronFor(at) : MINUTE_CRON, at);
    }, delay);
  }

  /** Stops firing and waits for a run that is going. Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      if (this.timer !== null) clearTimeout(this.timer);
      await this.running;
    })();
    return this.closing;
  }
}
