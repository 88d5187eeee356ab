import { describe, expect, it } from "vitest";
import { acquireConcurrency } from "../../worker/src/limits/concurrency.ts";
import { type AdmissionSubject } from "../../worker/src/limits/types.ts";
import { redis } from "./helpers.ts";
import { subject, freshPrefix, deadRedis, withSilentRedis, type Limits } from "./limits-helpers.ts";

function acquire(prefix: string, s: AdmissionSubject, opts: { leaseMs?: number } = {}) {
  return acquireConcurrency(redis(), prefix, s, { ...opts, requestId: crypto.randomUUID() });
}

describe("concurrency caps", () => {
  it("refuses a key's third in-flight request at cap 2 and frees the slot on release", async () => {
    const prefix = freshPrefix();
    const s = subject({ key: { concurrency: 2 } });
    const first = await acquire(prefix, s);
    const second = await acquire(prefix, s);
    expect([first.acquired, second.acquired]).toEqual([true, true]);

    const third = await acquire(prefix, s);
    expect(third).toMatchObject({ acquired: false, blocked: { layer: "key" }, degraded: false });
    // Another key of the tenant is not affected by this key's cap.
    expect((await acquire(prefix, subject({ key: { concurrency: 2 } }, { keyId: "k2" }))).acquired).toBe(true);

    await first.release();
    const fourth = await acquire(prefix, s);
    expect(fourth).toMatchObject({ acquired: true, blocked: null, degraded: false });
    expect(await redis().zcard(`${prefix}cc:key:k1`)).toBe(2);
  });

  it("keeps the in-flight set alive no longer than the lease", async () => {
    const prefix = freshPrefix();
    await acquire(prefix, subject({ key: { concurrency: 2 } }), { leaseMs: 30_000 });
    const ttl = await redis().pttl(`${prefix}cc:key:k1`);
    expect(ttl).toBeGreaterThan(25_000);
    expect(ttl).toBeLessThanOrEqual(30_000);
  });

  it("treats a second release as harmless and never frees another request's slot", async () => {
    const prefix = freshPrefix();
    const s = subject({ key: { concurrency: 2 }, tenant: { concurrency: 5 } });
    const a = await acquire(prefix, s);
    const b = await acquire(prefix, s);
    expect(b.acquired).toBe(true);
    await a.release();
    await a.release();
    await Promise.all([a.release(), a.release()]);
    expect(await redis().zcard(`${prefix}cc:key:k1`)).toBe(1);
    expect(await redis().zcard(`${prefix}cc:tenant:t1`)).toBe(1);
    // A refused lease holds nothing, so releasing it must not free anything either.
    await acquire(prefix, s);
    const refused = await acquire(prefix, s);
    expect(refused.acquired).toBe(false);
    await refused.release();
    expect(await redis().zcard(`${prefix}cc:key:k1`)).toBe(2);
  });

  it("reclaims a slot whose lease expired (a crashed request never leaks it)", async () => {
    const prefix = freshPrefix();
    const s = subject({ key: { concurrency: 1 } });
    expect((await acquire(prefix, s, { leaseMs: 100 })).acquired).toBe(true);
    expect((await acquire(prefix, s, { leaseMs: 100 })).acquired).toBe(false);
    await new Promise((r) => setTimeout(r, 150));
    const after = await acquire(prefix, s, { leaseMs: 100 });
    expect(after).toMatchObject({ acquired: true, degraded: false });
    expect(await redis().zcard(`${prefix}cc:key:k1`)).toBe(1);
  });
});

describe("all or nothing across layers", () => {
  it("takes no key slot when the tenant is full", async () => {
    const prefix = freshPrefix();
    const limits: Limits = { tenant: { concurrency: 1 }, key: { concurrency: 5 } };
    expect((await acquire(prefix, subject(limits, { keyId: "a" }))).acquired).toBe(true);
    const refused = await acquire(prefix, subject(limits, { keyId: "b" }));
    expect(refused).toMatchObject({ acquired: false, blocked: { layer: "tenant" } });
    expect(await redis().zcard(`${prefix}cc:key:b`)).toBe(0);
    expect(await redis().zcard(`${prefix}cc:tenant:t1`)).toBe(1);
  });

  it("takes no tenant slot when the key is full", async () => {
    const prefix = freshPrefix();
    const s = subject({ tenant: { concurrency: 5 }, key: { concurrency: 1 } });
    expect((await acquire(prefix, s)).acquired).toBe(true);
    const refused = await acquire(prefix, s);
    expect(refused).toMatchObject({ acquired: false, blocked: { layer: "key" } });
    expect(await redis().zcard(`${prefix}cc:tenant:t1`)).toBe(1);
    expect(await redis().zcard(`${prefix}cc:key:k1`)).toBe(1);
  });
});

describe("without Redis", () => {
  it("makes no Redis call when neither layer has a cap", async () => {
    const lease = await acquireConcurrency(deadRedis(), freshPrefix(), subject({ key: { rpm: 5 } }), { requestId: "r1" });
    expect(lease).toMatchObject({ acquired: true, blocked: null, degraded: false });
    await lease.release();
  });

  it("fails open with degraded true when Redis is unreachable", async () => {
    const started = Date.now();
    const lease = await acquireConcurrency(deadRedis(), freshPrefix(), subject({ key: { concurrency: 1 } }), { requestId: "r1", timeoutMs: 5_000 });
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(lease).toMatchObject({ acquired: true, blocked: null, degraded: true });
    await expect(lease.release()).resolves.toBeUndefined();
  });

  it("fails open with degraded true when Redis does not answer within the timeout", async () => {
    const started = Date.now();
    const lease = await withSilentRedis((r) =>
      acquireConcurrency(r, freshPrefix(), subject({ tenant: { concurrency: 1 } }), { requestId: "r1", timeoutMs: 200 }),
    );
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(Date.now() - started).toBeLessThan(1_500);
    expect(lease).toMatchObject({ acquired: true, blocked: null, degraded: true });
  });
});
