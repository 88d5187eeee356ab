import { randomBytes } from "node:crypto";
import { REPORT_TTL_SECONDS, type StreamReport } from "../../../schema/contracts/stream-report.ts";

/** What happened to a report, for the metrics: issued, refused (store full), taken, expired untaken. */
export type StreamReportEvent = "issued" | "refused" | "taken" | "expired";

/** A report opened for one stream: its token, and `finish` to file how the stream ended (first call wins). */
export interface OpenReport {
  token: string;
  finish(report: StreamReport): void;
}

/** Settings of the store; the defaults are the contract's. */
export interface StreamReportsOptions {
  /** Reports held at most (running streams and finished ones not yet taken). */
  maxEntries?: number;
  /** How long a finished report waits to be taken. */
  ttlMs?: number;
  onEvent?: (event: StreamReportEvent) => void;
}

interface Entry {
  report: StreamReport | null;
  /** Takes waiting for the stream to end; the first gets the report, the others null. */
  waiters: ((report: StreamReport | null) => void)[];
  expiry: NodeJS.Timeout | null;
}

/** Running streams plus finished reports not yet taken: far above what one host runs at once (the gateway takes a report as its stream ends). */
const MAX_ENTRIES = 10_000;

/**
 * The reports of reported streams (schema/contracts/stream-report.ts), kept in memory until the
 * gateway takes them: a running stream's entry waits for `finish`, a finished one for a `take`, at
 * most the TTL. Bounded: when full, `open` returns null and the stream goes unreported (the gateway
 * then taps it itself), rather than an entry being dropped that a gateway may still ask for.
 */
export class StreamReports {
  private readonly entries = new Map<string, Entry>();
  private readonly maxEntries: number;
  private readonly ttlMs: number;
  private readonly onEvent: (event: StreamReportEvent) => void;
  private closed = false;

  constructor(opts: StreamReportsOptions = {}) {
    this.maxEntries = opts.maxEntries ?? MAX_ENTRIES;
    this.ttlMs = opts.ttlMs ?? REPORT_TTL_SECONDS * 1000;
    this.onEvent = opts.onEvent ?? (() => {});
  }

  /** Reports held now (running and finished). */
  get size(): number {
    return this.entries.size;
  }

  /** Opens a report for a stream about to start; null when the store is full or closed. */
  open(): OpenReport | null {
    if (this.closed || this.entries.size >= this.maxEntries) {
      this.onEvent("refused");
      return null;
    }
    const token = randomBytes(16).toString("hex");
    const entry: Entry = { report: null, waiters: [], expiry: null };
    this.entries.set(token, entry);
    this.onEvent("issued");
    return { token, finish: (report) => this.finish(token, entry, report) };
  }

  /**
   * The report of `token` once its stream has ended (at once if it has), given once; null for a
   * token it does not hold. When `signal` aborts first the wait is dropped and resolves null; the
   * report stays for a later take until its TTL.
   */
  take(token: string, signal?: AbortSignal): Promise<StreamReport | null> {
    const entry = this.entries.get(token);
    if (!entry || signal?.aborted) return Promise.resolve(null);
    if (entry.report) return Promise.resolve(this.give(token, entry, entry.report));
    return new Promise((resolve) => {
      const onAbort = () => {
        entry.waiters = entry.waiters.filter((w) => w !== waiter);
        resolve(null);
      };
      const waiter = (report: StreamReport | null) => {
        signal?.removeEventListener("abort", onAbort);
        resolve(report);
      };
      entry.waiters.push(waiter);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Drops every report and timer; pending takes resolve null. Safe to call twice. */
  close(): void {
    this.closed = true;
    for (const entry of this.entries.values()) {
      if (entry.expiry) clearTimeout(entry.expiry);
      for (const waiter of entry.waiters) waiter(null);
    }
    this.entries.clear();
  }

  private finish(token: string, entry: Entry, report: StreamReport): void {
    // Finished already, taken, expired or the store closed: the first report stands.
    if (entry.report || this.entries.get(token) !== entry) return;
    entry.report = report;
    const [first, ...rest] = entry.waiters;
    entry.waiters = [];
    if (first) {
      first(this.give(token, entry, report));
      for (const waiter of rest) waiter(null);
      return;
    }
    entry.expiry = setTimeout(() => {
      this.entries.delete(token);
      this.onEvent("expired");
    }, this.ttlMs);
    entry.expiry.unref();
  }

  private give(token: string, entry: Entry, report: StreamReport): StreamReport {
    if (entry.expiry) clearTimeout(entry.expiry);
    this.entries.delete(token);
    this.onEvent("taken");
    return report;
  }
}
