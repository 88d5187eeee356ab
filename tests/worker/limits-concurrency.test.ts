import { afterEach, describe, expect, it } from "vitest";
import { redis } from "./helpers.ts";
import { caller, deadRedis, leased, limitsHarness, quiesceLimits, withSilentRedis, type Limits } from "./limits-helpers.ts";

// Requests in flight (the tenant and key layers), through admit() and the slot leases under it.

afterEach(quiesceLimits);

describe("concurrency caps", () => {
  it("refuses a key's third in-flight request at cap 2 and frees the slot when a request finishes", async () => {
    const h = await limitsHarness();
    const who = caller({ key: { concurrency: 2 } });
    const first = await h.admit(who);
    const second = await h.admit(who);

    const third = await h.refusal(who);
    expect(third).toMatchObject({ status: 429, code: "rate_limit_exceeded", type: "requests" });
    expect(third.message).toBe("Too many requests in flight for the key (limit 2). Retry when one of them finishes.");
    expect(third.headers["retry-after"]).toBe("1");
    // Another key of the tenant is not affected by this key's cap.
    await h.admit(caller({ key: { concurrency: 2 } }, { keyId: "k2" }));

    await first.finish(null);
    const fourth = await h.admit(who);
    await expect(h.refusal(who)).resolves.toMatchObject({ code: "rate_limit_exceeded" });
    // Redis never holds more than the cap for the key: slots in leases plus slots held directly.
    const key = `${h.prefix}cc:key:k1`;
    expect((await leased(key)) + (await redis().zcard(key))).toBe(2);
    await Promise.all([second.finish(null), fourth.finish(null)]);
  });

  it("treats a second finish as harmless and never frees another request's slot", async () => {
    const h = await limitsHarness();
    const who = caller({ key: { concurrency: 2 }, tenant: { concurrency: 5 } });
    const a = await h.admit(who);
    await h.admit(who);
    await a.finish(null);
    await a.finish(null);
    await Promise.all([a.finish(null), a.finish({ tokens: 1, spend: 0, requests: 1 })]);
    // One slot was freed, not four: one more fits, the next does not.
    await h.admit(who);
    await expect(h.refusal(who)).resolves.toMatchObject({ message: expect.stringContaining("in flight for the key") as unknown });
  });

  it("keeps the slot of a request that outlives its lease, held directly, until the request finishes", async () => {
    const h = await limitsHarness({ LEASE_IDLE_MS: "100" });
    const who = caller({ key: { concurrency: 1 } });
    const running = await h.admit(who);
    // The idle lease goes back to Redis; the running request's slot stays taken, now in the slot set
    // (with a 10-minute expiry, so a crashed isolate's request cannot hold it for ever).
    await h.background();
    const key = `${h.prefix}cc:key:k1`;
    expect(await leased(key)).toBe(0);
    expect(await redis().zcard(key)).toBe(1);
    const ttl = await redis().pttl(key);
    expect(ttl).toBeGreaterThan(9 * 60_000);
    expect(ttl).toBeLessThanOrEqual(10 * 60_000);
    await expect(h.refusal(who)).resolves.toMatchObject({ message: expect.stringContaining("Too many requests in flight") as unknown });

    await running.finish(null);
    expect(await redis().zcard(key)).toBe(0);
    await expect(h.admit(who)).resolves.toMatchObject({ path: "redis" });
  });
});

describe("all or nothing across layers", () => {
  it("takes no key slot when the tenant is full", async () => {
    const h = await limitsHarness();
    const limits: Limits = { tenant: { concurrency: 1 }, key: { concurrency: 5 } };
    const a = await h.admit(caller(limits, { keyId: "a" }));
    const refused = await h.refusal(caller(limits, { keyId: "b" }));
    expect(refused.message).toContain("in flight for the tenant (limit 1)");
    expect(await leased(`${h.prefix}cc:key:b`)).toBe(0);
    expect(await redis().zcard(`${h.prefix}cc:key:b`)).toBe(0);

    await a.finish(null);
    await expect(h.admit(caller(limits, { keyId: "b" }))).resolves.toBeDefined();
  });

  it("takes no tenant slot when the key is full", async () => {
    const h = await limitsHarness();
    const limits: Limits = { tenant: { concurrency: 5 }, key: { concurrency: 1 } };
    await h.admit(caller(limits, { keyId: "k1" }));
    const refused = await h.refusal(caller(limits, { keyId: "k1" }));
    expect(refused.message).toContain("in flight for the key (limit 1)");
    // The refused request left the tenant's other four slots free.
    for (const keyId of ["k2", "k3", "k4", "k5"]) await h.admit(caller(limits, { keyId }));
    const tenantFull = await h.refusal(caller(limits, { keyId: "k6" }));
    expect(tenantFull.message).toContain("in flight for the tenant (limit 5)");
  });
});

describe("without Redis", () => {
  it("fails open at once when Redis is unreachable, logs it, and finishing is harmless", async () => {
    const h = await limitsHarness({ LIMITS_TIMEOUT_MS: "5000" });
    const who = caller({ key: { concurrency: 1 } });
    const started = Date.now();
    const first = await h.admit(who, {}, { redis: deadRedis() });
    // Unchecked, so a second request over the cap is admitted too.
    const second = await h.admit(who, {}, { redis: deadRedis() });
    expect(Date.now() - started).toBeLessThan(4_000);
    expect(h.logs.filter((l) => l.event === "limits_fail_open").map((l) => l.fields)).toEqual([
      expect.objectContaining({ rate: false, concurrency: true }),
      expect.objectContaining({ rate: false, concurrency: true }),
    ]);
    await expect(first.finish(null)).resolves.toBeUndefined();
    await expect(second.finish(null)).resolves.toBeUndefined();
  });

  it("fails open once the deadline passes when Redis does not answer", async () => {
    const h = await limitsHarness({ LIMITS_TIMEOUT_MS: "200" });
    const started = Date.now();
    const admission = await withSilentRedis((r) => h.admit(caller({ tenant: { concurrency: 1 } }), {}, { redis: r }));
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(admission.path).toBe("redis");
    expect(h.logs.find((l) => l.event === "limits_fail_open")?.fields).toMatchObject({ rate: false, concurrency: true });
  });
});
