import pg from "pg";

/** The gateway's own view of a run, from its usage rows (worker clock: handler start to upstream first byte / end). */
export interface Recorded {
  rows: number;
  latencyMs: { p50: number; p99: number } | null;
  firstByteMs: { p50: number; p99: number } | null;
}

/**
 * Watches `usage_records` in the benchmark's database. The gateway queues one usage event per
 * request in Redis (in `waitUntil`) and its scheduled job writes them; waiting for the rows (firing
 * the job while waiting) keeps that tail inside the run it belongs to (its CPU is counted there, and
 * it does not slow the next run) and checks nothing was lost.
 */
export class UsageRows {
  private readonly pool: pg.Pool;
  private closing: Promise<void> | null = null;

  constructor(databaseUrl: string) {
    this.pool = new pg.Pool({ connectionString: databaseUrl, max: 1 });
    // An idle client whose server connection drops must not crash the process.
    this.pool.on("error", () => {});
  }

  async count(): Promise<number> {
    const { rows } = await this.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM usage_records");
    return rows[0]?.n ?? 0;
  }

  /** What the gateway itself recorded for requests it started at or after `since`. */
  async recordedSince(since: Date): Promise<Recorded> {
    const { rows } = await this.pool.query<{ n: number; lat50: number | null; lat99: number | null; ttft50: number | null; ttft99: number | null }>(
      `SELECT count(*)::int AS n,
              percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS lat50,
              percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS lat99,
              percentile_cont(0.5) WITHIN GROUP (ORDER BY ttft_ms) AS ttft50,
              percentile_cont(0.99) WITHIN GROUP (ORDER BY ttft_ms) AS ttft99
         FROM usage_records WHERE at >= $1`,
      [since],
    );
    const row = rows[0];
    const pair = (p50: number | null | undefined, p99: number | null | undefined) =>
      p50 === null || p50 === undefined || p99 === null || p99 === undefined ? null : { p50, p99 };
    return { rows: row?.n ?? 0, latencyMs: pair(row?.lat50, row?.lat99), firstByteMs: pair(row?.ttft50, row?.ttft99) };
  }

  /** Resolves with the count once it reaches `expected`, or stops growing for `quietMs`, or `timeoutMs` passes. */
  async waitFor(expected: number, signal: AbortSignal, flush: () => Promise<void>, quietMs = 3_000, timeoutMs = 30_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    await flush();
    let last = await this.count();
    let lastChange = Date.now();
    while (last < expected && Date.now() < deadline && Date.now() - lastChange < quietMs) {
      signal.throwIfAborted();
      await new Promise((resolve) => setTimeout(resolve, 100));
      await flush();
      const now = await this.count();
      if (now !== last) lastChange = Date.now();
      last = now;
    }
    return last;
  }

  /** Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= this.pool.end();
    return this.closing;
  }
}
