import { env } from "cloudflare:test";
import { Redis } from "@upstash/redis/cloudflare";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ApiError } from "../../worker/src/errors.ts";
import type { Admission } from "../../worker/src/limits/admission.ts";
import { budgetMarkerKey, type Cost } from "../../worker/src/limits/budgets.ts";
import { ACQUIRE, KIND } from "../../worker/src/limits/lease-scripts.ts";
import { WriteBatch } from "../../worker/src/limits/write-batch.ts";
import { eventually, redis } from "./helpers.ts";
import {
  bucket,
  caller,
  counterValue,
  deadRedis,
  leaseRecords,
  limitsHarness,
  outcomes,
  quiesceLimits,
  sleep,
  withCountingRedis,
  type Limits,
  type LimitsHarness,
  type TestBudget,
} from "./limits-helpers.ts";

// Capacity leases (limits/leases.ts, lease-scripts.ts) as admit() uses them: what an isolate admits
// without Redis, how exact it stays, and what goes back to Redis.

afterEach(quiesceLimits);

function budget(kind: TestBudget["kind"], amount: number, period: TestBudget["period"] = "day"): TestBudget {
  return { id: `bud-${crypto.randomUUID()}`, kind, period, amount };
}

/**
 * Asks for `need` of a budget as another isolate of the deployment would (the acquire script, under
 * a holder name of its own); returns the script's status: 0 granted, > 0 refused.
 */
async function acquireAsAnotherIsolate(h: LimitsHarness, key: string, limit: number, need: number): Promise<number> {
  const raw = await redis().eval<(string | number)[], number[]>(
    ACQUIRE,
    [budgetMarkerKey(h.prefix), key, `${key}:lease`],
    [Date.now(), 10_000, h.settings.leaseMs + 60_000, 0.5, KIND.budget, limit, need, need, 0, 0, 0, "another-isolate.1"],
  );
  return Number(raw[0]);
}

describe("admission from a lease", () => {
  it("admits from the isolate's leases with no Redis call once a first admission took them, and returns them idle in one round trip", async () => {
    const h = await limitsHarness({ LEASE_SECONDS: "10", LEASE_IDLE_MS: "1000" });
    const quota = budget("requests", 1000, "total");
    const who = caller({ key: { rpm: 1000, tpm: 100_000, concurrency: 50 } }, { budgets: [quota] });
    await withCountingRedis(async (counted, requests) => {
      const first = await h.admit(who, { tokens: 10 }, { redis: counted });
      expect(first.path).toBe("redis");
      // One round trip for the four resources (EVALSHA, or EVAL after a NOSCRIPT).
      expect(requests.length).toBeGreaterThanOrEqual(1);
      expect(requests.flat().every((c) => c === "evalsha" || c === "eval")).toBe(true);
      const before = requests.length;

      const second = await h.admit(who, { tokens: 10 }, { redis: counted });
      expect(second.path).toBe("local");
      expect(requests.length).toBe(before);
      expect(second.headers["x-ratelimit-remaining-requests"]).toBe("998");

      await first.finish(null);
      await second.finish(null);
      // Idle for LEASE_IDLE_MS: the four leases go back in one pipeline.
      await h.background();
      expect(requests.at(-1)).toEqual(["eval", "eval", "eval", "eval"]);
    });
    for (const key of [`${h.prefix}rl:req:key:k1`, `${h.prefix}rl:tok:key:k1`, `${h.prefix}cc:key:k1`, h.budgetKey(quota)]) {
      expect(await leaseRecords(key)).toEqual({});
    }
  });

  it("charges the budget and names the limit of a request admitted from a lease another identity object took", async () => {
    // The isolate caches a key's identity for KEY_CACHE_ISOLATE_SECONDS; after a refresh the key's
    // requests come with a new identity object, and keys of one tenant share its layer's leases.
    const h = await limitsHarness();
    const spend = budget("tokens", 10_000);
    const limits: Limits = { tenant: { rpm: 3 } };
    // The first takes a lease of 2 of the tenant's 3 requests; the second is admitted from it.
    const before = await h.admit(caller(limits, { budgets: [spend] }), { tokens: 100 });
    const after = await h.admit(caller(limits, { budgets: [spend] }), { tokens: 100 });
    expect(after.path).toBe("local");
    await before.finish({ tokens: 50, spend: 0, requests: 1 });
    await after.finish({ tokens: 50, spend: 0, requests: 1 });
    await h.admit(caller(limits, { keyId: "k2" }));
    const refused = await h.refusal(caller(limits, { keyId: "k3" }));
    expect(refused).toMatchObject({ status: 429, code: "rate_limit_exceeded", type: "requests" });
    expect(refused.message).toContain("for the tenant");
    await h.background();
    expect(await counterValue(h.budgetKey(spend))).toBe(100);
  });

  it("keeps admitting a budget-limited request from its lease while Redis is down, until the lease ends, then refuses with 503", async () => {
    const h = await limitsHarness({ LEASE_SECONDS: "2", LEASE_IDLE_MS: "60000" });
    const quota = budget("requests", 1000, "total");
    const who = caller({}, { budgets: [quota] });
    const first = await h.admit(who);
    const tookLease = Date.now();
    expect(first.path).toBe("redis");

    const dead = deadRedis();
    const second = await h.admit(who, {}, { redis: dead });
    const third = await h.admit(who, {}, { redis: dead });
    expect([second.path, third.path]).toEqual(["local", "local"]);

    await sleep(Math.max(0, tookLease + 2_100 - Date.now()));
    const refused = await h.refusal(who, {}, { redis: dead });
    expect(refused).toMatchObject({ status: 503, code: "dependency_unavailable" });

    // The three requests settle once Redis is back: the counter is exactly what they used.
    const batch = new WriteBatch(redis().pipeline());
    for (const a of [first, second, third]) await a.finish({ tokens: 1, spend: 0, requests: 1 }, batch);
    await batch.exec(redis());
    await h.background();
    expect(await counterValue(h.budgetKey(quota))).toBe(3);
  });
});

/**
 * Bursts of `size` concurrent admissions: the first at once, each next one after the leases have
 * gone back (idle), until a burst admits nothing or `enough` are admitted; returns each burst's count.
 */
async function bursts(h: LimitsHarness, size: number, admitOne: () => Promise<Admission>, settle: Cost, enough = Infinity): Promise<number[]> {
  const counts: number[] = [];
  for (let total = 0; counts.length < 5 && total < enough; ) {
    if (counts.length > 0) await h.background();
    const { admitted, refused } = await outcomes(Array.from({ length: size }, admitOne));
    expect(refused.every((r) => r.status === 429)).toBe(true);
    await Promise.all(admitted.map((a) => a.finish(settle)));
    counts.push(admitted.length);
    total += admitted.length;
    if (admitted.length === 0) break;
  }
  return counts;
}

const sum = (counts: number[]) => counts.reduce((a, b) => a + b, 0);

// A burst admits no more than the limit, and all of it once the leases have gone back. Usually the
// first burst admits all of it; it may admit less when capacity reaches this isolate's lease (a
// grant or a refill landing) after the requests that needed it were refused: see "a refill on its
// way" below.
describe("exactness in one isolate", () => {
  it("admits no more than rpm 100 of 200 concurrent requests (plus what the bucket refilled meanwhile), and all 100 in the end", async () => {
    const h = await limitsHarness();
    const started = Date.now();
    const counts = await bursts(h, 200, () => h.admit(caller({ key: { rpm: 100 } })), { tokens: 1, spend: 0, requests: 1 }, 100);
    // 100/60 requests come back each whole second since the bucket was made.
    const refilled = Math.floor((Math.ceil((Date.now() - started) / 1000) * 100) / 60);
    expect(counts[0]).toBeLessThanOrEqual(100 + refilled);
    expect(sum(counts)).toBeGreaterThanOrEqual(100);
    expect(sum(counts)).toBeLessThanOrEqual(100 + refilled);
  });

  it("admits no more than 37 of 200 concurrent requests against a request quota of 37, and exactly 37 in the end", async () => {
    const h = await limitsHarness();
    const quota = budget("requests", 37, "total");
    const counts = await bursts(h, 200, () => h.admit(caller({}, { budgets: [quota] })), { tokens: 1, spend: 0, requests: 1 });
    expect(counts[0]).toBeLessThanOrEqual(37);
    expect(sum(counts)).toBe(37);
    await h.background();
    expect(await counterValue(h.budgetKey(quota))).toBe(37);
  });

  it("admits no more of 200 concurrent requests than fit in a token budget, and exactly that in the end", async () => {
    const h = await limitsHarness();
    const tokens = budget("tokens", 1_000);
    const counts = await bursts(h, 200, () => h.admit(caller({}, { budgets: [tokens] }), { tokens: 30 }), { tokens: 30, spend: 0, requests: 1 });
    expect(counts[0]).toBeLessThanOrEqual(33);
    expect(sum(counts)).toBe(33);
    await h.background();
    expect(await counterValue(h.budgetKey(tokens))).toBe(990);
  });

  // A background refill that Redis has granted but whose answer has not reached the isolate yet
  // holds capacity: a request refused meanwhile waits for the refill and tries again.
  it("admits a request whose need is split between the lease, a refill on its way and Redis", async () => {
    const realFetch = globalThis.fetch;
    const slow = "http://held-redis.test";
    let holding = false;
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => (release = resolve));
    vi.stubGlobal("fetch", async (input: RequestInfo | URL, init?: RequestInit) => {
      const url = String(input instanceof Request ? input.url : input);
      if (!url.startsWith(slow)) return realFetch(input, init);
      const hold = holding;
      const res = await realFetch(env.UPSTASH_REDIS_REST_URL + url.slice(slow.length), init);
      // Redis has run the commands; the answer is held back until the test lets it through.
      if (hold) await released;
      return res;
    });
    try {
      const held = new Redis({ url: slow, token: env.UPSTASH_REDIS_REST_TOKEN, enableTelemetry: false });
      const h = await limitsHarness();
      const tokens = budget("tokens", 100);
      const key = h.budgetKey(tokens);
      const who = caller({}, { budgets: [tokens] });
      // The lease takes 80 (the need and a share of the rest); 20 left in it is below its low mark,
      // so a refill starts at once through the same client, and Redis grants it the last 10.
      const first = await h.admit(who, { tokens: 60 }, { redis: held });
      holding = true;
      await eventually(async () => ((await counterValue(key)) === 90 ? true : undefined));
      const batch = new WriteBatch(redis().pipeline());
      await first.finish({ tokens: 10, spend: 0, requests: 1 }, batch);
      await batch.exec(redis());
      // 90 of 100 are left: 70 in the lease, 10 in the refill on its way, 10 in Redis. The refill's
      // answer arrives while the request is being refused.
      setTimeout(release, 100);
      const outcome = await h.admit(who, { tokens: 90 }).then(
        () => "admitted",
        (err: unknown) => (err instanceof ApiError ? err.code : String(err)),
      );
      expect(outcome).toBe("admitted");
    } finally {
      release();
      vi.unstubAllGlobals();
    }
  });
});

describe("unused capacity goes back", () => {
  it("empties every lease hash once the leases are idle: the budget counter is the settled usage and the buckets hold what was not admitted", async () => {
    const h = await limitsHarness({ LEASE_IDLE_MS: "200" });
    const spend = budget("tokens", 10_000);
    const who = caller({ key: { rpm: 60, tpm: 600, concurrency: 10 }, tenant: { concurrency: 20 } }, { budgets: [spend] });
    const started = Date.now();
    for (let i = 0; i < 3; i++) {
      const admission = await h.admit(who, { tokens: 100 });
      await admission.finish({ tokens: 70, spend: 0, requests: 1 });
    }
    await h.background();
    const elapsedRefills = Math.ceil((Date.now() - started) / 1000) + 1;

    const keys = { req: `${h.prefix}rl:req:key:k1`, tok: `${h.prefix}rl:tok:key:k1`, keySlots: `${h.prefix}cc:key:k1`, tenantSlots: `${h.prefix}cc:tenant:t1`, budget: h.budgetKey(spend) };
    for (const key of Object.values(keys)) expect(await redis().exists(`${key}:lease`)).toBe(0);
    expect(await counterValue(keys.budget)).toBe(210);
    expect(await redis().zcard(keys.keySlots)).toBe(0);
    expect(await redis().zcard(keys.tenantSlots)).toBe(0);
    // Buckets: the limit less what was admitted (3 requests, 300 tokens), plus whole refills
    // (1 request and 10 tokens a second).
    const req = await bucket(keys.req);
    const tok = await bucket(keys.tok);
    const reqRefills = (req?.tokens ?? 0) - 57;
    const tokRefills = ((tok?.tokens ?? 0) - 300) / 10;
    expect(Number.isInteger(reqRefills) && reqRefills >= 0 && reqRefills <= elapsedRefills).toBe(true);
    expect(Number.isInteger(tokRefills) && tokRefills >= 0 && tokRefills <= elapsedRefills).toBe(true);
  });
});

describe("records of an isolate that died", () => {
  it("are taken back by the next admission once expired, so the budget is usable again", async () => {
    const h = await limitsHarness();
    const tokens = budget("tokens", 100);
    const key = h.budgetKey(tokens);
    const now = Date.now();
    await redis().hset(`${key}:lease`, { "dead0isolate.1": 100, "dead0isolate.1:e": now - 1_000, "dead0isolate.1:a": now - 66_000 });
    await redis().set(key, 100);

    const admission = await h.admit(caller({}, { budgets: [tokens] }), { tokens: 40 });
    expect(admission.path).toBe("redis");
    expect(Object.keys(await leaseRecords(key))).not.toContain("dead0isolate.1");
    expect(await redis().hexists(`${key}:lease`, "dead0isolate.1:e")).toBe(0);
    await admission.finish({ tokens: 40, spend: 0, requests: 1 });
    await h.background();
    expect(await counterValue(key)).toBe(40);
  });

  it("are left alone while they have not expired: the capacity they hold stays taken", async () => {
    const h = await limitsHarness();
    const tokens = budget("tokens", 100);
    const key = h.budgetKey(tokens);
    const now = Date.now();
    await redis().hset(`${key}:lease`, { "live0isolate.1": 100, "live0isolate.1:e": now + 60_000, "live0isolate.1:a": now });
    await redis().set(key, 100);

    const refused = await h.refusal(caller({}, { budgets: [tokens] }), { tokens: 40 });
    expect(refused).toMatchObject({ status: 429, code: "insufficient_quota" });
    expect(await leaseRecords(key)).toEqual({ "live0isolate.1": 100 });
    expect(await counterValue(key)).toBe(100);
  });

  it("free the slots they held once expired", async () => {
    const h = await limitsHarness();
    const key = `${h.prefix}cc:key:k1`;
    await redis().hset(`${key}:lease`, { "dead1isolate.1": 2, "dead1isolate.1:e": Date.now() - 1_000 });
    const admission = await h.admit(caller({ key: { concurrency: 2 } }));
    expect(Object.keys(await leaseRecords(key))).not.toContain("dead1isolate.1");
    await admission.finish(null);
  });
});

describe("a changed limit", () => {
  it("is admitted from a fresh lease at once, and the lease of the old limit goes back", async () => {
    const h = await limitsHarness({ LEASE_IDLE_MS: "300" });
    const before = budget("requests", 3, "total");
    const after: TestBudget = { ...before, amount: 100 };
    const key = h.budgetKey(before);
    const old = await h.admit(caller({ key: { rpm: 3 } }, { budgets: [before] }));
    expect(old.path).toBe("redis");
    const [oldHolder] = Object.keys(await leaseRecords(key));
    await old.finish({ tokens: 1, spend: 0, requests: 1 });

    // The old lease still has a request of each limit to give (rpm 3 and 3 requests grant 2), but
    // the new limits are not admitted from it.
    const raised = caller({ key: { rpm: 100 } }, { budgets: [after] });
    const fresh = await h.admit(raised);
    expect(fresh.path).toBe("redis");
    expect(fresh.headers["x-ratelimit-limit-requests"]).toBe("100");
    await fresh.finish({ tokens: 1, spend: 0, requests: 1 });
    const holders = Object.keys(await leaseRecords(key));
    expect(holders).toHaveLength(2);
    const newHolder = holders.find((holder) => holder !== oldHolder);

    // Kept busy, the new lease stays while the old one (idle) goes back. (The key's bucket carries
    // over from rpm 3 with one request left, so the requests that keep the lease busy carry only the
    // budget.)
    const busy = caller({}, { budgets: [after] });
    let records: Record<string, number> = {};
    for (let i = 0; i < 50; i++) {
      const a = await h.admit(busy);
      await a.finish({ tokens: 1, spend: 0, requests: 1 });
      records = await leaseRecords(key);
      if (oldHolder !== undefined && !(oldHolder in records)) break;
      await sleep(50);
    }
    expect(Object.keys(records)).toEqual([newHolder]);
    await h.background();
    expect(await leaseRecords(key)).toEqual({});
  });
});

describe("leases off (LEASE_SECONDS=0)", () => {
  it("asks Redis on every admission, for exactly the need", async () => {
    const h = await limitsHarness({ LEASE_SECONDS: "0" });
    const quota = budget("requests", 100, "total");
    const who = caller({ key: { rpm: 60, tpm: 6_000, concurrency: 10 } }, { budgets: [quota] });
    const reqKey = `${h.prefix}rl:req:key:k1`;
    const tokKey = `${h.prefix}rl:tok:key:k1`;
    let firstRefill = 0;
    for (let i = 1; i <= 3; i++) {
      const admission = await h.admit(who, { tokens: 50 });
      expect(admission.path).toBe("redis");
      // A budget counter takes exactly the need; a bucket gives exactly the need (plus its refills
      // of 1 request and 100 tokens a second since it was made).
      expect(await counterValue(h.budgetKey(quota))).toBe(i);
      const req = await bucket(reqKey);
      const tok = await bucket(tokKey);
      if (!req || !tok) throw new Error("buckets missing");
      if (i === 1) firstRefill = req.refilledAt;
      const refills = (req.refilledAt - firstRefill) / 1000;
      expect(req.tokens).toBe(60 - i + refills);
      expect(tok.tokens).toBe(6_000 - 50 * i + 100 * refills);
      await admission.finish({ tokens: 50, spend: 0, requests: 1 });
    }
    await h.background();
    expect(await counterValue(h.budgetKey(quota))).toBe(3);
  });
});

describe("settlement in lease mode", () => {
  it("leaves the difference of a reservation settled to less usable at once", async () => {
    const h = await limitsHarness();
    const tokens = budget("tokens", 1_000);
    const who = caller({}, { budgets: [tokens] });
    // The lease takes 240 (the need and three more like it), enough that nothing refills meanwhile.
    const first = await h.admit(who, { tokens: 60 });
    await first.finish({ tokens: 10, spend: 0, requests: 1 });
    // 990 are left: 230 in this isolate's lease, 760 in Redis.
    const second = await h.admit(who, { tokens: 990 });
    await expect(h.refusal(who, { tokens: 1 })).resolves.toMatchObject({ code: "insufficient_quota" });
    await second.finish({ tokens: 990, spend: 0, requests: 1 });
    await h.background();
    expect(await counterValue(h.budgetKey(tokens))).toBe(1_000);
  });

  it("charges usage above the reservation in full: no isolate admits more from the budget", async () => {
    const h = await limitsHarness();
    const tokens = budget("tokens", 100);
    const who = caller({}, { budgets: [tokens] });
    const key = h.budgetKey(tokens);
    const admission = await h.admit(who, { tokens: 60 });
    // The engine produced more than was reserved.
    await admission.finish({ tokens: 130, spend: 0, requests: 1 });
    // At once, not when the lease goes back: the counter passes the budget.
    expect(await counterValue(key)).toBe(130);
    await expect(h.refusal(who, { tokens: 1 })).resolves.toMatchObject({ code: "insufficient_quota" });
    // Nor does another isolate get any of it: the budget is spent (130 of 100).
    expect(await acquireAsAnotherIsolate(h, key, 100, 1)).toBeGreaterThan(0);
    await h.background();
    expect(await counterValue(key)).toBe(130);
  });
});
