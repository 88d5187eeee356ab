import { HEARTBEAT_PATH, type Heartbeat } from "../../../schema/contracts/heartbeat.ts";
import type { Log } from "../log.ts";
import type { GatewayClient } from "./gateway-client.ts";

/**
 * Sends a heartbeat every `intervalMs`, and at once when `sendNow()` is called (status changes,
 * drain). A failed beat is retried after a second rather than a whole interval, so a node whose
 * gateway was briefly unreachable does not go stale. Logs only when reachability changes.
 */
export class HeartbeatSender {
  private readonly client: GatewayClient;
  private readonly intervalMs: number;
  private readonly build: () => Heartbeat;
  private readonly log: Log;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private reachable: boolean | null = null;
  private failures = 0;
  private inFlight: Promise<boolean> | null = null;

  private readonly onResult: (ok: boolean) => void;

  constructor(opts: { client: GatewayClient; intervalMs: number; build: () => Heartbeat; log: Log; onResult?: (ok: boolean) => void }) {
    this.client = opts.client;
    this.intervalMs = opts.intervalMs;
    this.build = opts.build;
    this.log = opts.log;
    this.onResult = opts.onResult ?? (() => {});
  }

  /** Sends the first beat and keeps beating. */
  start(): void {
    void this.beat();
  }

  /** Sends a beat now, after any beat already under way (which may carry older state); true when the gateway took it. */
  sendNow(): Promise<boolean> {
    const current = this.inFlight;
    return current ? current.then(() => this.beat()) : this.beat();
  }

  private beat(): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    this.inFlight ??= this.send().finally(() => {
      this.inFlight = null;
    });
    return this.inFlight;
  }

  private async send(): Promise<boolean> {
    if (this.timer) clearTimeout(this.timer);
    let ok = false;
    let detail: string;
    try {
      const res = await this.client.post(HEARTBEAT_PATH, this.build(), Math.min(10_000, Math.max(1_000, this.intervalMs)));
      ok = res.ok;
      detail = ok ? "" : `HTTP ${res.status}: ${(await res.text()).slice(0, 300)}`;
      if (ok) await res.arrayBuffer().catch(() => null);
    } catch (err) {
      detail = String(err);
    }
    this.failures = ok ? 0 : this.failures + 1;
    this.onResult(ok);
    if (ok !== this.reachable) {
      if (ok) this.log("heartbeat_ok", {}, "info");
      // A gateway that is not up yet when the node starts is normal: say so quietly, and warn
      // only if it was reachable before or stays unreachable for ten tries.
      else this.log("heartbeat_failed", { detail, failures: this.failures }, this.reachable === null ? "info" : "warn");
      this.reachable = ok;
    } else if (!ok && this.failures === 10) {
      this.log("heartbeat_failed", { detail, failures: this.failures }, "warn");
    }
    if (!this.closed) {
      this.timer = setTimeout(() => void this.beat(), ok ? this.intervalMs : Math.min(1_000, this.intervalMs));
      this.timer.unref();
    }
    return ok;
  }

  /** Stops beating (a last beat may still be in flight). Safe to call twice. */
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
