import { afterEach, describe, expect, it } from "vitest";
import { formatDuration } from "../../worker/src/limits/rate.ts";
import { redis } from "./helpers.ts";
import { bucket, caller, deadRedis, limitsHarness, quiesceLimits, sleep, withCountingRedis, withSilentRedis, type Limits } from "./limits-helpers.ts";

// Requests and tokens per minute, through admit() (limits/admission.ts) and the capacity leases under it.

afterEach(quiesceLimits);

describe("requests per minute", () => {
  it("refuses a key's 4th request at rpm 3 with a 429, Retry-After and remaining 0, while another key of the tenant passes", async () => {
    const h = await limitsHarness();
    const limits: Limits = { key: { rpm: 3 }, tenant: { rpm: 100 } };
    for (let i = 0; i < 3; i++) await h.admit(caller(limits, { keyId: "a" }));

    const refused = await h.refusal(caller(limits, { keyId: "a" }));
    expect(refused.status).toBe(429);
    expect(refused.code).toBe("rate_limit_exceeded");
    expect(refused.type).toBe("requests");
    expect(refused.message).toContain("for the key (requests per minute: limit 3)");
    // rpm 3 refills one request every 20 s: Retry-After must not send the client back sooner than
    // that, nor later.
    const retryAfter = Number(refused.headers["retry-after"]);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(20);
    expect(refused.headers["x-ratelimit-limit-requests"]).toBe("3");
    expect(refused.headers["x-ratelimit-remaining-requests"]).toBe("0");

    const other = await h.admit(caller(limits, { keyId: "b" }));
    expect(other.headers["x-ratelimit-limit-requests"]).toBe("3");
    expect(other.headers["x-ratelimit-remaining-requests"]).toBe("2");
  });

  it("limits a tenant across its keys and leaves other tenants alone", async () => {
    const h = await limitsHarness();
    const limits: Limits = { tenant: { rpm: 3 }, key: { rpm: 10 } };
    await h.admit(caller(limits, { keyId: "a" }));
    await h.admit(caller(limits, { keyId: "a" }));
    await h.admit(caller(limits, { keyId: "b" }));

    const refused = await h.refusal(caller(limits, { keyId: "b" }));
    expect(refused).toMatchObject({ code: "rate_limit_exceeded", type: "requests" });
    expect(refused.message).toContain("for the tenant");
    await expect(h.admit(caller(limits, { tenantId: "t2", keyId: "c" }))).resolves.toMatchObject({ path: "redis" });
  });

  it("limits an environment across its keys", async () => {
    const h = await limitsHarness();
    const limits: Limits = { environment: { rpm: 2 } };
    await h.admit(caller(limits, { keyId: "a" }));
    await h.admit(caller(limits, { keyId: "b" }));
    const refused = await h.refusal(caller(limits, { keyId: "c" }));
    expect(refused).toMatchObject({ code: "rate_limit_exceeded", type: "requests" });
    expect(refused.message).toContain("for the environment");
    await expect(h.admit(caller(limits, { environmentId: "e2", keyId: "d" }))).resolves.toBeDefined();
  });

  it("limits the whole gateway at the global layer across tenants", async () => {
    const h = await limitsHarness();
    const limits: Limits = { global: { rpm: 2 } };
    await h.admit(caller(limits, { tenantId: "t1" }));
    await h.admit(caller(limits, { tenantId: "t2" }));
    const refused = await h.refusal(caller(limits, { tenantId: "t3" }));
    expect(refused).toMatchObject({ code: "rate_limit_exceeded", type: "requests" });
    expect(refused.message).toContain("for the global");
  });
});

describe("tokens per minute", () => {
  it("consumes the request's tokens and refuses one that does not fit, without consuming it", async () => {
    const h = await limitsHarness();
    const who = caller({ key: { tpm: 1000 } });
    const first = await h.admit(who, { tokens: 600 });
    expect(first.headers["x-ratelimit-limit-tokens"]).toBe("1000");
    expect(first.headers["x-ratelimit-remaining-tokens"]).toBe("400");

    const refused = await h.refusal(who, { tokens: 600 });
    expect(refused).toMatchObject({ status: 429, code: "rate_limit_exceeded", type: "tokens" });
    expect(Number(refused.headers["retry-after"])).toBeGreaterThanOrEqual(1);
    expect(refused.headers["x-ratelimit-remaining-tokens"]).toBe("0");
    const refusedAt = Date.now();

    // Once the isolate's lease has gone back (idle) and its blocked-identifier cache lapsed (the
    // bucket's next refill, within 1 s), the 400 tokens the refused request did not take are there.
    await h.background();
    await sleep(Math.max(0, refusedAt + 1_100 - Date.now()));
    const fits = await h.admit(who, { tokens: 400 });
    expect(Number(fits.headers["x-ratelimit-remaining-tokens"])).toBeLessThan(100);
  });

  it("refuses a request larger than a minute's tokens with a 400 before anything is taken", async () => {
    const h = await limitsHarness({}, { seeded: false });
    const who = caller({ key: { rpm: 10 }, tenant: { tpm: 1000 } });
    const tooLarge = await h.refusal(who, { tokens: 1001 });
    expect(tooLarge).toMatchObject({ status: 400, code: "invalid_value", param: "max_tokens" });
    expect(tooLarge.message).toContain("more than the tenant's limit of 1000 tokens per minute");
    expect(await redis().keys(`${h.prefix}*`)).toEqual([]);
    // Nor does it leave the caller blocked for ordinary requests.
    const next = await h.admit(who, { tokens: 1000 });
    expect(next.headers["x-ratelimit-remaining-requests"]).toBe("9");
  });
});

describe("tokens charged after the response", () => {
  it("takes usage beyond the estimate from every limited layer, below zero, so the next request is refused", async () => {
    const h = await limitsHarness();
    const who = caller({ key: { tpm: 600 }, tenant: { tpm: 6000 } });
    const admission = await h.admit(who, { tokens: 400 });
    // The engine used 900 tokens where 400 were estimated: 500 more, 100 more than the key had left.
    const started = Date.now();
    await admission.finish({ tokens: 900, spend: 0, requests: 1 });
    expect((await bucket(`${h.prefix}rl:tok:key:k1`))?.tokens).toBeLessThan(0);

    const next = await h.refusal(who, { tokens: 1 });
    expect(next).toMatchObject({ status: 429, code: "rate_limit_exceeded", type: "tokens" });
    expect(next.message).toContain("for the key");
    expect(next.headers["x-ratelimit-remaining-tokens"]).toBe("0");

    // The tenant's lease absorbed the 500; once it has gone back the bucket holds 6000 − 900,
    // plus what refilled meanwhile (100 a second).
    await h.background();
    const tenant = await bucket(`${h.prefix}rl:tok:tenant:t1`);
    expect(tenant?.tokens).toBeGreaterThanOrEqual(5_100);
    expect(tenant?.tokens).toBeLessThanOrEqual(5_100 + 100 * Math.ceil((Date.now() - started) / 1000 + 1));
  });
});

describe("rate limit headers", () => {
  it("reports the tightest layer of each dimension in OpenAI's format", async () => {
    const h = await limitsHarness();
    const res = await h.admit(caller({ key: { rpm: 10, tpm: 10_000 }, tenant: { rpm: 100, tpm: 1_000 } }), { tokens: 250 });
    expect(res.headers["x-ratelimit-limit-requests"]).toBe("10");
    expect(res.headers["x-ratelimit-remaining-requests"]).toBe("9");
    // One request back at 10/min takes 6 s (the bucket refills each second).
    const resetRequests = res.headers["x-ratelimit-reset-requests"] ?? "";
    expect(resetRequests).toMatch(/^\d+(\.\d{1,3})?s$/);
    expect(Number.parseFloat(resetRequests)).toBeGreaterThan(4.9);
    expect(Number.parseFloat(resetRequests)).toBeLessThanOrEqual(7);
    // Tokens: the tenant (750 of 1 000 left) is tighter than the key (9 750 of 10 000).
    expect(res.headers["x-ratelimit-limit-tokens"]).toBe("1000");
    expect(res.headers["x-ratelimit-remaining-tokens"]).toBe("750");
    const resetTokens = res.headers["x-ratelimit-reset-tokens"] ?? "";
    expect(resetTokens).toMatch(/^\d+(\.\d{1,3})?s$/);
    expect(Number.parseFloat(resetTokens)).toBeGreaterThan(13.9);
    expect(Number.parseFloat(resetTokens)).toBeLessThanOrEqual(16);

    // The next request of the same isolate sees what the first took.
    const second = await h.admit(caller({ key: { rpm: 10, tpm: 10_000 }, tenant: { rpm: 100, tpm: 1_000 } }), { tokens: 250 });
    expect(second.headers["x-ratelimit-remaining-requests"]).toBe("8");
    expect(second.headers["x-ratelimit-remaining-tokens"]).toBe("500");
  });

  it("omits the pair of a dimension no layer limits", async () => {
    const h = await limitsHarness();
    const res = await h.admit(caller({ key: { rpm: 5 } }), { tokens: 100 });
    expect(Object.keys(res.headers).sort()).toEqual(["x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"]);
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
  it("refuses a blocked key again from the isolate's cache without asking Redis, until the bucket's next refill", async () => {
    // Leases off: nothing refills in the background, so the bucket is only what the requests did.
    const h = await limitsHarness({ LEASE_SECONDS: "0" }, { seeded: false });
    const who = caller({ key: { rpm: 1 } });
    await h.admit(who);
    await h.refusal(who);
    const blockedAt = Date.now();
    await h.background();

    // Wipe the bucket: Redis would now admit, so a refusal can only come from the cache.
    const keys = await redis().keys(`${h.prefix}*`);
    expect(keys.length).toBeGreaterThan(0);
    await redis().del(...keys);
    const cached = await withCountingRedis(async (counted, requests) => {
      const refusal = await h.refusal(who, {}, { redis: counted });
      expect(requests).toEqual([]);
      return refusal;
    });
    expect(cached).toMatchObject({ code: "rate_limit_exceeded", type: "requests" });
    expect(cached.message).toContain("for the key");
    expect(await redis().keys(`${h.prefix}*`)).toEqual([]);

    // The cache holds only until the bucket's next refill; then Redis (now empty) decides again.
    await sleep(Math.max(0, blockedAt + 1_100 - Date.now()));
    await expect(h.admit(who)).resolves.toMatchObject({ path: "redis" });
  });
});

describe("fail open", () => {
  it("admits a rate-limited request at once when Redis is unreachable, and logs it", async () => {
    const h = await limitsHarness({ LIMITS_TIMEOUT_MS: "5000" });
    const started = Date.now();
    const admission = await h.admit(caller({ key: { rpm: 1, tpm: 1000 }, global: { rpm: 1 } }), { tokens: 100 }, { redis: deadRedis() });
    // A closed port answers at once: no waiting for the 5 s deadline.
    expect(Date.now() - started).toBeLessThan(4_000);
    expect(admission.path).toBe("redis");
    // Unchecked layers have no headers to report.
    expect(admission.headers).toEqual({});
    expect(h.logs.find((l) => l.event === "limits_fail_open")?.fields).toMatchObject({ rate: true, concurrency: false });
    await admission.finish(null);
  });

  it("admits a rate-limited request once the deadline passes when Redis does not answer, and logs it", async () => {
    const h = await limitsHarness({ LIMITS_TIMEOUT_MS: "200" });
    const started = Date.now();
    const admission = await withSilentRedis((r) => h.admit(caller({ key: { rpm: 1 }, tenant: { tpm: 10 } }), { tokens: 1 }, { redis: r }));
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(admission.headers).toEqual({});
    expect(h.logs.find((l) => l.event === "limits_fail_open")?.fields).toMatchObject({ rate: true, concurrency: false });
  });

  it("makes no Redis call when no layer has a limit", async () => {
    const h = await limitsHarness();
    const admission = await h.admit(caller({}), { tokens: 100 }, { redis: deadRedis() });
    expect(admission.path).toBe("local");
    expect(admission.headers).toEqual({});
    expect(h.logs).toEqual([]);
  });
});
