import { describe, expect, it } from "vitest";
import { chargeTokens, checkRateLimits, formatDuration } from "../../worker/src/limits/rate.ts";
import { redis } from "./helpers.ts";
import { subject, freshPrefix, deadRedis, withSilentRedis, type Limits } from "./limits-helpers.ts";

async function times(n: number, fn: () => Promise<{ allowed: boolean }>): Promise<boolean[]> {
  const out: boolean[] = [];
  for (let i = 0; i < n; i++) out.push((await fn()).allowed);
  return out;
}

describe("requests per minute", () => {
  it("refuses a key's 4th request at rpm 3 while another key of the same tenant passes", async () => {
    const prefix = freshPrefix();
    const limits: Limits = { key: { rpm: 3 }, tenant: { rpm: 100 } };
    const a = subject(limits, { keyId: "a" });
    const b = subject(limits, { keyId: "b" });
    expect(await times(3, () => checkRateLimits(redis(), prefix, a, 10))).toEqual([true, true, true]);

    const refused = await checkRateLimits(redis(), prefix, a, 10);
    expect(refused.allowed).toBe(false);
    expect(refused.blocked).toEqual({ layer: "key", kind: "requests" });
    expect(refused.retryAfterSeconds).toBeGreaterThan(0);
    // rpm 3 refills one request every 20 s: Retry-After must not send the client back sooner.
    expect(refused.retryAfterSeconds).toBeLessThanOrEqual(20);
    expect(refused.headers["x-ratelimit-remaining-requests"]).toBe("0");
    expect(refused.degraded).toBe(false);

    const other = await checkRateLimits(redis(), prefix, b, 10);
    expect(other.allowed).toBe(true);
    expect(other.blocked).toBeNull();
    expect(other.retryAfterSeconds).toBe(0);
  });

  it("limits a tenant across its keys and leaves other tenants alone", async () => {
    const prefix = freshPrefix();
    const limits: Limits = { tenant: { rpm: 3 }, key: { rpm: 10 } };
    expect(await times(2, () => checkRateLimits(redis(), prefix, subject(limits, { keyId: "a" }), 1))).toEqual([true, true]);
    expect((await checkRateLimits(redis(), prefix, subject(limits, { keyId: "b" }), 1)).allowed).toBe(true);

    const refused = await checkRateLimits(redis(), prefix, subject(limits, { keyId: "b" }), 1);
    expect(refused.blocked).toEqual({ layer: "tenant", kind: "requests" });
    const otherTenant = await checkRateLimits(redis(), prefix, subject(limits, { tenantId: "t2", keyId: "c" }), 1);
    expect(otherTenant.allowed).toBe(true);
  });

  it("limits an environment across its keys", async () => {
    const prefix = freshPrefix();
    const limits: Limits = { environment: { rpm: 2 } };
    expect((await checkRateLimits(redis(), prefix, subject(limits, { keyId: "a" }), 1)).allowed).toBe(true);
    expect((await checkRateLimits(redis(), prefix, subject(limits, { keyId: "b" }), 1)).allowed).toBe(true);
    const refused = await checkRateLimits(redis(), prefix, subject(limits, { keyId: "c" }), 1);
    expect(refused.blocked).toEqual({ layer: "environment", kind: "requests" });
    expect((await checkRateLimits(redis(), prefix, subject(limits, { environmentId: "e2", keyId: "d" }), 1)).allowed).toBe(true);
  });

  it("limits the whole gateway at the global layer across tenants", async () => {
    const prefix = freshPrefix();
    const limits: Limits = { global: { rpm: 2 } };
    expect((await checkRateLimits(redis(), prefix, subject(limits, { tenantId: "t1" }), 1)).allowed).toBe(true);
    expect((await checkRateLimits(redis(), prefix, subject(limits, { tenantId: "t2" }), 1)).allowed).toBe(true);
    const refused = await checkRateLimits(redis(), prefix, subject(limits, { tenantId: "t3" }), 1);
    expect(refused.blocked).toEqual({ layer: "global", kind: "requests" });
  });
});

describe("tokens per minute", () => {
  it("consumes the request's tokens and refuses one that does not fit, without consuming it", async () => {
    const prefix = freshPrefix();
    const s = subject({ key: { tpm: 1000 } });
    const first = await checkRateLimits(redis(), prefix, s, 600);
    expect(first.allowed).toBe(true);
    expect(first.headers["x-ratelimit-limit-tokens"]).toBe("1000");
    expect(first.headers["x-ratelimit-remaining-tokens"]).toBe("400");

    const refused = await checkRateLimits(redis(), prefix, s, 600);
    expect(refused.allowed).toBe(false);
    expect(refused.blocked).toEqual({ layer: "key", kind: "tokens" });
    expect(refused.retryAfterSeconds).toBeGreaterThan(0);

    // Once the isolate's blocked-identifier cache lapses (next refill, within 1 s), the 400 tokens the
    // refused request did not take are still there.
    await new Promise((r) => setTimeout(r, 1_100));
    const fits = await checkRateLimits(redis(), prefix, s, 400);
    expect(fits.allowed).toBe(true);
    expect(Number(fits.headers["x-ratelimit-remaining-tokens"])).toBeLessThan(50);
  });

  it("refuses a request larger than a minute's tokens without touching any bucket", async () => {
    const prefix = freshPrefix();
    const s = subject({ key: { rpm: 10 }, tenant: { tpm: 1000 } });
    const res = await checkRateLimits(redis(), prefix, s, 1001);
    expect(res).toMatchObject({ allowed: false, blocked: { layer: "tenant", kind: "tokens" }, retryAfterSeconds: 60, degraded: false });
    expect(await redis().keys(`${prefix}*`)).toEqual([]);
    // Nor does it leave the tenant blocked for ordinary requests.
    const next = await checkRateLimits(redis(), prefix, s, 1000);
    expect(next.allowed).toBe(true);
    expect(next.headers["x-ratelimit-remaining-requests"]).toBe("9");
  });
});

describe("tokens charged after the response", () => {
  it("takes usage beyond the estimate from every limited layer, below zero, so the next request is refused", async () => {
    const prefix = freshPrefix();
    const s = subject({ key: { tpm: 600 }, tenant: { tpm: 6000 } });
    expect((await checkRateLimits(redis(), prefix, s, 400)).allowed).toBe(true);
    // The engine used 900 tokens where 400 were estimated: 500 more, 100 more than the key had left.
    await chargeTokens(redis(), prefix, s, 500);
    expect(Number(await redis().hget(`${prefix}rl:tok:key:k1`, "tokens"))).toBeLessThan(0);
    expect(Number(await redis().hget(`${prefix}rl:tok:tenant:t1`, "tokens"))).toBeCloseTo(5100, -2);
    const next = await checkRateLimits(redis(), prefix, s, 1);
    expect(next).toMatchObject({ allowed: false, blocked: { layer: "key", kind: "tokens" }, degraded: false });
    expect(next.headers["x-ratelimit-remaining-tokens"]).toBe("0");
  });
});

describe("rate limit headers", () => {
  it("reports the tightest layer of each dimension in OpenAI's format", async () => {
    const prefix = freshPrefix();
    const s = subject({ key: { rpm: 10, tpm: 10_000 }, tenant: { rpm: 100, tpm: 1_000 } });
    const res = await checkRateLimits(redis(), prefix, s, 250);
    expect(res.allowed).toBe(true);
    expect(res.headers["x-ratelimit-limit-requests"]).toBe("10");
    expect(res.headers["x-ratelimit-remaining-requests"]).toBe("9");
    // One request back at 10/min takes 6 s (refilled each second, so 5–6 s from now).
    const resetRequests = res.headers["x-ratelimit-reset-requests"] ?? "";
    expect(resetRequests).toMatch(/^\d+(\.\d{1,3})?s$/);
    expect(Number.parseFloat(resetRequests)).toBeGreaterThan(4.9);
    expect(Number.parseFloat(resetRequests)).toBeLessThanOrEqual(6);
    // Tokens: the tenant (750 of 1 000 left) is tighter than the key (9 750 of 10 000).
    expect(res.headers["x-ratelimit-limit-tokens"]).toBe("1000");
    expect(res.headers["x-ratelimit-remaining-tokens"]).toBe("750");
    expect(res.headers["x-ratelimit-reset-tokens"]).toMatch(/^\d+(\.\d{1,3})?s$/);
    expect(Number.parseFloat(res.headers["x-ratelimit-reset-tokens"] ?? "")).toBeGreaterThan(13.9);
  });

  it("omits the pair of a dimension no layer limits", async () => {
    const res = await checkRateLimits(redis(), freshPrefix(), subject({ key: { rpm: 5 } }), 100);
    expect(Object.keys(res.headers).sort()).toEqual([
      "x-ratelimit-limit-requests",
      "x-ratelimit-remaining-requests",
      "x-ratelimit-reset-requests",
    ]);
  });

  it("formats durations as OpenAI does", () => {
    expect(formatDuration(0)).toBe("0s");
    expect(formatDuration(250)).toBe("250ms");
    expect(formatDuration(1_000)).toBe("1s");
    expect(formatDuration(1_500)).toBe("1.5s");
    expect(formatDuration(8_640)).toBe("8.64s");
    expect(formatDuration(360_000)).toBe("6m0s");
    expect(formatDuration(3_723_000)).toBe("1h2m3s");
  });
});

describe("blocked-identifier cache", () => {
  it("refuses a blocked key again from the isolate's cache without asking Redis", async () => {
    const prefix = freshPrefix();
    const s = subject({ key: { rpm: 1 } });
    expect((await checkRateLimits(redis(), prefix, s, 1)).allowed).toBe(true);
    expect((await checkRateLimits(redis(), prefix, s, 1)).allowed).toBe(false);

    // Wipe the bucket: Redis would now allow, so a refusal can only come from the cache.
    const keys = await redis().keys(`${prefix}*`);
    expect(keys.length).toBeGreaterThan(0);
    await redis().del(...keys);
    const cached = await checkRateLimits(redis(), prefix, s, 1);
    expect(cached.allowed).toBe(false);
    expect(cached.blocked).toEqual({ layer: "key", kind: "requests" });
    expect(await redis().keys(`${prefix}*`)).toEqual([]);

    // The cache holds only until the bucket's next refill; then Redis (now empty) decides again.
    await new Promise((r) => setTimeout(r, 1_100));
    expect((await checkRateLimits(redis(), prefix, s, 1)).allowed).toBe(true);
  });
});

describe("fail-open", () => {
  it("allows with degraded true when Redis is unreachable, without waiting for the timeout", async () => {
    const started = Date.now();
    const res = await checkRateLimits(deadRedis(), freshPrefix(), subject({ key: { rpm: 1, tpm: 1000 }, global: { rpm: 1 } }), 100, { timeoutMs: 5_000 });
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(res).toMatchObject({ allowed: true, blocked: null, retryAfterSeconds: 0, degraded: true, headers: {} });
    await res.pending;
  });

  it("allows with degraded true when Redis does not answer within the timeout", async () => {
    const started = Date.now();
    const res = await withSilentRedis((r) => checkRateLimits(r, freshPrefix(), subject({ key: { rpm: 1 }, tenant: { tpm: 10 } }), 1, { timeoutMs: 200 }));
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(Date.now() - started).toBeLessThan(1_500);
    expect(res).toMatchObject({ allowed: true, blocked: null, retryAfterSeconds: 0, degraded: true, headers: {} });
  });

  it("makes no Redis call when no layer has a limit", async () => {
    const res = await checkRateLimits(deadRedis(), freshPrefix(), subject({ key: { concurrency: 3 } }), 100);
    expect(res).toMatchObject({ allowed: true, blocked: null, retryAfterSeconds: 0, degraded: false, headers: {} });
  });
});
