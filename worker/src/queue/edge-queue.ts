import { DurableObject } from "cloudflare:workers";
import { WaitingLine, type Waiter } from "./waiters.ts";

/** What a request asks of its model's queue (queue/turn.ts). */
export interface WaitAsk {
  ticket: string;
  rank: number;
  cls: string;
  tenantId: string;
  /** True when the asking isolate saw every candidate node at its in-flight target. */
  full: boolean;
  /** How long the request may wait here. */
  maxWaitMs: number;
  /** Past this many waiting requests a new one is refused at once. */
  maxWaiting: number;
  /** With requests waiting and no capacity freed for this long, one is let through to probe the fleet. */
  recheckMs: number;
}

/** How a wait ended (admitted, ran out, the line was full, the caller left), after how long, and how many requests still wait. */
export interface WaitOutcome {
  kind: "admitted" | "timeout" | "full" | "left";
  waitedMs: number;
  depth: number;
}

/** The queue's state for operators and metrics. */
export interface QueueDepth {
  waiting: number;
  byClass: Record<string, number>;
  credits: number;
}

/** A slot freed while nobody waited is kept this long for the next arrival (heartbeats lag by about a second). */
const CREDIT_TTL_MS = 2_000;
/** At most this many such slots are kept. */
const MAX_CREDITS = 16;

interface Pending {
  waiter: Waiter;
  resolve: (outcome: WaitOutcome) => void;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * One model's edge queue (docs/edge-queue.md): a Durable Object (`idFromName(model)`)
 * holding the requests that found every node serving the model at its in-flight target. It grants
 * admission one request per freed slot, best rank first and round robin across tenants within a
 * rank (queue/waiters.ts). It learns that a slot freed from the gateway (`release`, sent when a
 * request of a congested model ends), and from arrivals that see capacity (`full: false`); with
 * requests waiting and nothing freed for `recheckMs`, it lets one through anyway, so a lost release
 * (an isolate that did not know the model was congested) delays the line but never stalls it.
 * State is in memory only: waiters are live calls, and an evicted object's callers fall back
 * (queue/turn.ts).
 */
export class EdgeQueue extends DurableObject<Env> {
  private readonly line = new WaitingLine();
  private readonly pending = new Map<string, Pending>();
  /** Slots freed while nobody who could take them waited: until when each is kept, and the worst rank it may go to. */
  private credits: { until: number; maxRank: number }[] = [];
  private lastGrantAt = Date.now();
  private probe: ReturnType<typeof setInterval> | null = null;

  /** Waits for a slot: answers when admitted, when the wait runs out, when the line is full, or when the caller leaves. */
  async wait(ask: WaitAsk): Promise<WaitOutcome> {
    const now = Date.now();
    this.credits = this.credits.filter((c) => c.until > now);
    if (!this.line.hasAtOrAbove(ask.rank)) {
      if (!ask.full) return { kind: "admitted", waitedMs: 0, depth: this.line.size };
      if (this.takeCredit(ask.rank)) {
        this.lastGrantAt = now;
        return { kind: "admitted", waitedMs: 0, depth: this.line.size };
      }
    } else if (!ask.full) {
      // The caller saw a slot free for its rank, but requests that rank as high wait: the slot is theirs.
      this.grant(1, ask.rank);
    }
    if (this.line.size >= ask.maxWaiting) {
      // A full line makes room for a better-ranked request by refusing its worst-ranked waiter.
      const evicted = this.line.evictionFor(ask.rank);
      if (!evicted) return { kind: "full", waitedMs: 0, depth: this.line.size };
      this.end(evicted.ticket, "full");
    }
    const waiter: Waiter = { ticket: ask.ticket, rank: ask.rank, cls: ask.cls, tenantId: ask.tenantId, enqueuedAt: now };
    return new Promise<WaitOutcome>((resolve) => {
      const timer = setTimeout(() => {
        if (!this.line.remove(ask.ticket)) return;
        this.pending.delete(ask.ticket);
        resolve({ kind: "timeout", waitedMs: Date.now() - now, depth: this.line.size });
        this.stopProbeIfIdle();
      }, Math.max(1, ask.maxWaitMs));
      this.pending.set(ask.ticket, { waiter, resolve, timer });
      this.line.add(waiter);
      this.startProbe(Math.max(50, ask.recheckMs));
    });
  }

  /**
   * Slots freed (requests of the model ended): the next `n` waiters ranked at most `maxRank` (the worst
   * rank the fleet has room for, queue/turn.ts `roomForRank`; any when absent) are admitted; slots
   * nobody takes are kept briefly for the ranks they allow. Returns the depth left.
   */
  release(n = 1, maxRank?: number): number {
    const limit = maxRank ?? Number.POSITIVE_INFINITY;
    const left = n - this.grant(n, limit);
    const now = Date.now();
    this.credits = this.credits.filter((c) => c.until > now);
    for (let i = 0; i < left && this.credits.length < MAX_CREDITS; i++) this.credits.push({ until: now + CREDIT_TTL_MS, maxRank: limit });
    return this.line.size;
  }

  /** Takes the kept slot that allows `rank` and the fewest others (the most restrictive); false when none does. */
  private takeCredit(rank: number): boolean {
    let pick = -1;
    for (let i = 0; i < this.credits.length; i++) {
      const c = this.credits[i];
      if (c && c.maxRank >= rank && (pick < 0 || c.maxRank < (this.credits[pick]?.maxRank ?? Number.POSITIVE_INFINITY))) pick = i;
    }
    if (pick < 0) return false;
    this.credits.splice(pick, 1);
    return true;
  }

  /** The caller left (its client disconnected): its waiter goes at once. True when it was still waiting. */
  leave(ticket: string): boolean {
    return this.end(ticket, "left");
  }

  /** Takes a waiter out of the line and answers it with `kind`. */
  private end(ticket: string, kind: "left" | "full"): boolean {
    const p = this.pending.get(ticket);
    if (!p || !this.line.remove(ticket)) return false;
    this.pending.delete(ticket);
    clearTimeout(p.timer);
    p.resolve({ kind, waitedMs: Date.now() - p.waiter.enqueuedAt, depth: this.line.size });
    this.stopProbeIfIdle();
    return true;
  }

  /** How many requests wait, by class. */
  depth(): QueueDepth {
    const now = Date.now();
    return { waiting: this.line.size, byClass: this.line.depthByClass(), credits: this.credits.filter((c) => c.until > now).length };
  }

  /** Admits up to `n` waiters in order, while the next one ranks at most `maxRank`; returns how many were admitted. */
  private grant(n: number, maxRank = Number.POSITIVE_INFINITY): number {
    let granted = 0;
    while (granted < n) {
      const best = this.line.bestRank();
      if (best === null || best > maxRank) break;
      const w = this.line.shift();
      if (!w) break;
      const p = this.pending.get(w.ticket);
      this.pending.delete(w.ticket);
      if (!p) continue;
      clearTimeout(p.timer);
      const now = Date.now();
      p.resolve({ kind: "admitted", waitedMs: now - w.enqueuedAt, depth: this.line.size });
      this.lastGrantAt = now;
      granted += 1;
    }
    this.stopProbeIfIdle();
    return granted;
  }

  private startProbe(everyMs: number): void {
    if (this.probe !== null) return;
    this.probe = setInterval(() => {
      if (Date.now() - this.lastGrantAt >= everyMs) this.grant(1);
    }, everyMs);
  }

  private stopProbeIfIdle(): void {
    if (this.line.size > 0 || this.probe === null) return;
    clearInterval(this.probe);
    this.probe = null;
  }
}
