/**
 * The waiting line of one model's edge queue (queue/edge-queue.ts), as plain data: requests wait
 * by rank (priority/class.ts `priorityRank`, lower goes first), and within a rank the tenants take
 * turns (round robin by tenant, each tenant's own requests in arrival order), so one tenant's
 * thousand requests do not starve another tenant's one.
 */

/** One request waiting for capacity. */
export interface Waiter {
  ticket: string;
  rank: number;
  /** The request's class name (for metrics); ordering uses `rank` only. */
  cls: string;
  tenantId: string;
  enqueuedAt: number;
}

interface RankLine {
  /** Each tenant's waiters, oldest first. */
  byTenant: Map<string, Waiter[]>;
  /** The tenants with waiters, in turn order; `next` indexes the tenant whose turn it is. */
  turns: string[];
  next: number;
}

/** Waiters ordered by rank, then round robin across tenants within a rank. */
export class WaitingLine {
  private readonly ranks = new Map<number, RankLine>();
  private readonly tickets = new Map<string, Waiter>();

  /** How many requests wait. */
  get size(): number {
    return this.tickets.size;
  }

  /** Waiting requests per class name. */
  depthByClass(): Record<string, number> {
    const depth: Record<string, number> = {};
    for (const w of this.tickets.values()) depth[w.cls] = (depth[w.cls] ?? 0) + 1;
    return depth;
  }

  /** The best (lowest) rank waiting, or null when nobody waits. */
  bestRank(): number | null {
    if (this.ranks.size === 0) return null;
    return Math.min(...this.ranks.keys());
  }

  /** True when some request waits with a rank at or above (number at or below) `rank`. */
  hasAtOrAbove(rank: number): boolean {
    for (const r of this.ranks.keys()) if (r <= rank) return true;
    return false;
  }

  /** Adds a waiter at the back of its tenant's line in its rank (a new tenant takes its turn last). */
  add(w: Waiter): void {
    let line = this.ranks.get(w.rank);
    if (!line) {
      line = { byTenant: new Map(), turns: [], next: 0 };
      this.ranks.set(w.rank, line);
    }
    const mine = line.byTenant.get(w.tenantId);
    if (mine) mine.push(w);
    else {
      line.byTenant.set(w.tenantId, [w]);
      // Joins the rotation just before the tenant whose turn it is: it goes after everyone already waiting.
      line.turns.splice(line.next, 0, w.tenantId);
      line.next += 1;
      if (line.next >= line.turns.length) line.next = 0;
    }
    this.tickets.set(w.ticket, w);
  }

  /** Removes and returns the waiter that goes next: the best rank, the tenant whose turn it is there. */
  shift(): Waiter | null {
    if (this.ranks.size === 0) return null;
    const rank = Math.min(...this.ranks.keys());
    const line = this.ranks.get(rank);
    if (!line) return null;
    const tenantId = line.turns[line.next] ?? line.turns[0];
    const mine = tenantId === undefined ? undefined : line.byTenant.get(tenantId);
    const w = mine?.shift();
    if (!w || tenantId === undefined || !mine) return null;
    if (mine.length === 0) {
      line.byTenant.delete(tenantId);
      line.turns.splice(line.next, 1);
    } else line.next += 1;
    if (line.next >= line.turns.length) line.next = 0;
    if (line.turns.length === 0) this.ranks.delete(rank);
    this.tickets.delete(w.ticket);
    return w;
  }

  /**
   * The waiter to refuse when the line is full and a request of `rank` arrives: in the worst rank below
   * `rank`, the newest waiter of the tenant with the most waiting (of those, the one that came last);
   * null when none ranks below it.
   */
  evictionFor(rank: number): Waiter | null {
    const worst = Math.max(...this.ranks.keys());
    if (this.ranks.size === 0 || worst <= rank) return null;
    const line = this.ranks.get(worst);
    let most: Waiter[] | undefined;
    for (const waiters of line?.byTenant.values() ?? []) if (!most || waiters.length >= most.length) most = waiters;
    return most?.[most.length - 1] ?? null;
  }

  /** Removes a waiter by ticket (a client that left, a wait that timed out); null when it no longer waits. */
  remove(ticket: string): Waiter | null {
    const w = this.tickets.get(ticket);
    if (!w) return null;
    this.tickets.delete(ticket);
    const line = this.ranks.get(w.rank);
    const mine = line?.byTenant.get(w.tenantId);
    if (!line || !mine) return w;
    const at = mine.indexOf(w);
    if (at >= 0) mine.splice(at, 1);
    if (mine.length === 0) {
      line.byTenant.delete(w.tenantId);
      const turn = line.turns.indexOf(w.tenantId);
      line.turns.splice(turn, 1);
      if (turn < line.next) line.next -= 1;
      if (line.next >= line.turns.length) line.next = 0;
      if (line.turns.length === 0) this.ranks.delete(w.rank);
    }
    return w;
  }
}
