import { describe, expect, it } from "vitest";
import { ConcurrencyLimiter, type SlotOutcome } from "../../backplane/src/engines/limiter.ts";

async function granted(p: Promise<SlotOutcome> | null): Promise<() => void> {
  if (p === null) throw new Error("refused");
  const outcome = await p;
  if (!outcome.ok) throw new Error(`not granted: ${outcome.reason}`);
  return outcome.release;
}

function queued(p: Promise<SlotOutcome> | null): Promise<SlotOutcome> {
  if (p === null) throw new Error("refused: queue full");
  return p;
}

/** Resolves after pending promise callbacks ran. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

describe("concurrency limiter", () => {
  it("grants up to maxConcurrency slots at once and queues the next request", async () => {
    const limiter = new ConcurrencyLimiter(2, 5);
    await granted(limiter.tryAcquire());
    await granted(limiter.tryAcquire());
    let third = false;
    const pending = limiter.tryAcquire();
    void pending?.then(() => (third = true));
    await settle();
    expect(third).toBe(false);
    expect(limiter.inFlight).toBe(2);
    expect(limiter.queued).toBe(1);
  });

  it("hands freed slots to waiters in FIFO order", async () => {
    const limiter = new ConcurrencyLimiter(1, 5);
    const first = await granted(limiter.tryAcquire());
    const order: string[] = [];
    const releases: Record<string, () => void> = {};
    for (const name of ["a", "b", "c"]) {
      void granted(limiter.tryAcquire()).then((release) => {
        order.push(name);
        releases[name] = release;
      });
    }
    first();
    await settle();
    expect(order).toEqual(["a"]);
    releases.a?.();
    await settle();
    releases.b?.();
    await settle();
    expect(order).toEqual(["a", "b", "c"]);
    expect(limiter.inFlight).toBe(1);
    expect(limiter.queued).toBe(0);
  });

  it("refuses synchronously with null when the queue is full, and with maxQueue 0 when all slots are busy", async () => {
    const limiter = new ConcurrencyLimiter(1, 1);
    await granted(limiter.tryAcquire());
    expect(limiter.tryAcquire()).not.toBeNull();
    expect(limiter.tryAcquire()).toBeNull();
    expect(limiter.queued).toBe(1);

    const noQueue = new ConcurrencyLimiter(1, 0);
    await granted(noQueue.tryAcquire());
    expect(noQueue.tryAcquire()).toBeNull();
  });

  it("removes a waiter whose signal aborts and resolves it as aborted, freeing its queue place", async () => {
    const limiter = new ConcurrencyLimiter(1, 1);
    const release = await granted(limiter.tryAcquire());
    const controller = new AbortController();
    const waiting = limiter.tryAcquire(controller.signal);
    controller.abort(new Error("client went away"));
    const outcome = await waiting;
    expect(outcome).toMatchObject({ ok: false, reason: "aborted" });
    expect(limiter.queued).toBe(0);
    // Its place is free again, and the released slot goes to the next live waiter.
    const next = limiter.tryAcquire();
    expect(next).not.toBeNull();
    release();
    expect((await next)?.ok).toBe(true);
  });

  it("resolves at once as aborted when the signal already fired", async () => {
    const limiter = new ConcurrencyLimiter(1, 1);
    const outcome = await limiter.tryAcquire(AbortSignal.abort());
    expect(outcome?.ok).toBe(false);
    expect(limiter.inFlight).toBe(0);
  });

  it("ignores a second release of the same slot", async () => {
    const limiter = new ConcurrencyLimiter(2, 0);
    const a = await granted(limiter.tryAcquire());
    await granted(limiter.tryAcquire());
    a();
    a();
    expect(limiter.inFlight).toBe(1);
  });

  it("rejectQueued resolves every waiter as rejected with the reason, keeping running slots", async () => {
    const limiter = new ConcurrencyLimiter(1, 3);
    await granted(limiter.tryAcquire());
    const waiters = [queued(limiter.tryAcquire()), queued(limiter.tryAcquire())];
    limiter.rejectQueued("draining");
    const outcomes = await Promise.all(waiters);
    expect(outcomes).toEqual([
      { ok: false, reason: "rejected", detail: "draining" },
      { ok: false, reason: "rejected", detail: "draining" },
    ]);
    expect(limiter.inFlight).toBe(1);
    expect(limiter.queued).toBe(0);
  });

  it("drain resolves once the last running request releases its slot", async () => {
    const limiter = new ConcurrencyLimiter(1, 1);
    await expect(limiter.drain()).resolves.toBeUndefined();
    const first = await granted(limiter.tryAcquire());
    const second = limiter.tryAcquire();
    let drained = false;
    void limiter.drain().then(() => (drained = true));
    first();
    const release = await granted(second);
    await settle();
    expect(drained).toBe(false);
    release();
    await settle();
    expect(drained).toBe(true);
  });
});
