/** Gives a slot back; calling it again does nothing. */
export type Release = () => void;

/** How a queued acquisition ended: a slot, or why it left the queue without one. */
export type SlotOutcome =
  | { ok: true; release: Release }
  | { ok: false; reason: "aborted"; detail: unknown }
  | { ok: false; reason: "rejected"; detail: unknown };

interface Waiter {
  /** The gateway's scheduling rank (lower first; schema/contracts/priority.ts). */
  rank: number;
  resolve: (outcome: SlotOutcome) => void;
  cleanup: () => void;
}

/**
 * Caps the requests the backplane runs on one engine at `maxConcurrency`, with a queue of at most
 * `maxQueue` waiters, served by rank (the gateway's priority rank, lower first) and in arrival order
 * within a rank (all in arrival order when no rank is given). `tryAcquire` returns null at once when the queue is full, so the caller
 * can answer 503 with Retry-After without holding the request (load shedding); otherwise a promise
 * that resolves with a slot, or with `aborted` (the caller's signal fired) or `rejected`
 * (`rejectQueued`, e.g. on drain). It never rejects.
 */
export class ConcurrencyLimiter {
  readonly maxConcurrency: number;
  readonly maxQueue: number;
  #inFlight = 0;
  readonly #queue: Waiter[] = [];
  #drainWaiters: (() => void)[] = [];

  constructor(maxConcurrency: number, maxQueue: number) {
    this.maxConcurrency = Math.max(1, maxConcurrency);
    this.maxQueue = Math.max(0, maxQueue);
  }

  /** Requests holding a slot. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Requests waiting for a slot. */
  get queued(): number {
    return this.#queue.length;
  }

  /** A slot now, a place in the queue (by `rank`, then arrival), or null when the queue is full (shed the request). */
  tryAcquire(signal?: AbortSignal, rank = 0): Promise<SlotOutcome> | null {
    if (signal?.aborted) return Promise.resolve({ ok: false, reason: "aborted", detail: signal.reason as unknown });
    if (this.#inFlight < this.maxConcurrency && this.#queue.length === 0) return Promise.resolve(this.#grant());
    if (this.#queue.length >= this.maxQueue) return null;
    return new Promise<SlotOutcome>((resolve) => {
      const onAbort = () => {
        const index = this.#queue.indexOf(waiter);
        if (index !== -1) this.#queue.splice(index, 1);
        resolve({ ok: false, reason: "aborted", detail: signal?.reason });
      };
      const waiter: Waiter = { rank, resolve, cleanup: () => signal?.removeEventListener("abort", onAbort) };
      signal?.addEventListener("abort", onAbort, { once: true });
      // After every waiter of the same or a better rank: arrival order within a rank.
      const at = this.#queue.findIndex((w) => w.rank > rank);
      if (at === -1) this.#queue.push(waiter);
      else this.#queue.splice(at, 0, waiter);
    });
  }

  /** Empties the queue; every waiter resolves `{ ok: false, reason: "rejected", detail: reason }`. Running requests keep their slots. */
  rejectQueued(reason: unknown): void {
    const waiters = this.#queue.splice(0);
    for (const waiter of waiters) {
      waiter.cleanup();
      waiter.resolve({ ok: false, reason: "rejected", detail: reason });
    }
    this.#checkDrained();
  }

  /** Resolves once no request holds a slot or waits for one. */
  drain(): Promise<void> {
    if (this.#inFlight === 0 && this.#queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  #grant(): SlotOutcome {
    this.#inFlight++;
    let released = false;
    const release: Release = () => {
      if (released) return;
      released = true;
      this.#inFlight--;
      this.#next();
    };
    return { ok: true, release };
  }

  #next(): void {
    while (this.#inFlight < this.maxConcurrency) {
      const waiter = this.#queue.shift();
      if (waiter === undefined) break;
      waiter.cleanup();
      waiter.resolve(this.#grant());
    }
    this.#checkDrained();
  }

  #checkDrained(): void {
    if (this.#inFlight !== 0 || this.#queue.length !== 0) return;
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
