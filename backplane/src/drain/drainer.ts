import type { EnginePool } from "../engines/pool.ts";
import type { Log } from "../log.ts";

/** How a drain ended. */
export type DrainResult = "drained" | "grace_expired";

/**
 * Draining: from `start()` on the node reports `draining` (the caller heartbeats at once) and
 * refuses new requests with 503 + Retry-After, while requests already accepted (running or queued
 * for a slot) finish. Resolves when they all did, or when the grace period runs out.
 */
export class Drainer {
  private readonly pool: EnginePool;
  private readonly graceMs: number;
  private readonly log: Log;
  private readonly onStart: () => void;
  private started: Promise<DrainResult> | null = null;
  private reason: string | null = null;

  constructor(opts: { pool: EnginePool; graceMs: number; log: Log; onStart: () => void }) {
    this.pool = opts.pool;
    this.graceMs = opts.graceMs;
    this.log = opts.log;
    this.onStart = opts.onStart;
  }

  /** True once a drain started. */
  get draining(): boolean {
    return this.started !== null;
  }

  /** Why the node drains (signal name, spot provider), or null. */
  get why(): string | null {
    return this.reason;
  }

  /** Starts draining (idempotent: a second call returns the first drain's result). */
  start(reason: string): Promise<DrainResult> {
    if (this.started) return this.started;
    this.reason = reason;
    const inFlight = this.pool.reports().reduce((n, r) => n + r.inFlight + r.queued, 0);
    this.log("drain_started", { reason, inFlight, graceMs: this.graceMs }, "info");
    const startedAt = Date.now();
    this.started = new Promise<DrainResult>((resolve) => {
      const timer = setTimeout(() => resolve("grace_expired"), this.graceMs);
      void Promise.all(this.pool.engines().map((r) => r.limiter.drain())).then(() => {
        clearTimeout(timer);
        resolve("drained");
      });
    }).then((result) => {
      const left = this.pool.reports().reduce((n, r) => n + r.inFlight + r.queued, 0);
      this.log("drain_finished", { reason, result, tookMs: Date.now() - startedAt, left }, result === "drained" ? "info" : "warn");
      return result;
    });
    // After `started` is set, so what onStart reports (a heartbeat) already says "draining".
    this.onStart();
    return this.started;
  }
}
