import { env } from "cloudflare:test";
import { eq, sql } from "drizzle-orm";
import { afterEach, describe, expect, it } from "vitest";
import { budgets, limitOverrides, usageRecords } from "../../schema/tables/index.ts";
import { createEnvironment, createTenant, newId } from "../../worker/src/admin/store.ts";
import { budgetCounter, budgetMarkerKey, type BudgetEntry } from "../../worker/src/limits/budgets.ts";
import { createApiKey, eventually, flushNow, post, query, redis } from "./helpers.ts";
import { caller, counterValue, deadRedis, leased, limitsHarness, outcomes, quiesceLimits, type TestBudget } from "./limits-helpers.ts";

const messages = [{ role: "user", content: "count to three" }];

/** A fresh tenant, environment and key, with budgets and limit overrides on the key. */
async function keyWith(opts: { budgets?: Omit<BudgetEntry, "id" | "scope" | "scopeId">[]; keyLimits?: { rpm?: number; tpm?: number; concurrency?: number } }) {
  return query(async (db) => {
    const tenant = await createTenant(db, "test", { name: `budget-${crypto.randomUUID().slice(0, 8)}` });
    const environment = await createEnvironment(db, "test", { tenantId: tenant.id, name: "prod" });
    const key = await createApiKey(db, "test", { tenantId: tenant.id, environmentId: environment.id, name: "k" });
    for (const b of opts.budgets ?? []) await db.insert(budgets).values({ id: newId("bud"), scope: "key", scopeId: key.id, ...b });
    if (opts.keyLimits) await db.insert(limitOverrides).values({ scope: "key", scopeId: key.id, rpm: null, tpm: null, concurrency: null, ...opts.keyLimits });
    const rows = await db.select().from(budgets).where(eq(budgets.scopeId, key.id));
    return { key: key.key, keyId: key.id, budgets: rows };
  });
}

/** The tokens recorded in usage_records for the key, once all `requests` of them are there (flushing meanwhile). */
function recordedTokens(keyId: string, requests: number): Promise<number> {
  return eventually(async () => {
    await flushNow();
    const [row] = await query((db) =>
      db.select({ n: sql<number>`count(*)::int`, tokens: sql<number>`coalesce(sum(prompt_tokens + completion_tokens), 0)::int` }).from(usageRecords).where(eq(usageRecords.apiKeyId, keyId)),
    );
    return row && row.n === requests ? row.tokens : undefined;
  });
}

async function counter(budget: BudgetEntry): Promise<number> {
  return Number((await redis().get<number>(budgetCounter(env.REDIS_PREFIX, budget, new Date()).key)) ?? 0);
}

// The admission of budgets (admit(), limits/admission.ts), each test under its own prefix with the
// budget marker set; the gateway tests below go through the whole worker.
afterEach(quiesceLimits);

// Per-request admission (leases off: each request takes exactly its need in one round trip) is exact
// under any concurrency; admission from leases is tested in limits-leases.test.ts.
describe("budget reservations", () => {
  it("admit exactly 10 of 50 concurrent requests against a request quota of 10, refusing the rest as insufficient_quota", async () => {
    const h = await limitsHarness({ LEASE_SECONDS: "0" });
    const quota: TestBudget = { id: `unit-${crypto.randomUUID()}`, kind: "requests", period: "total", amount: 10 };
    const { admitted, refused } = await outcomes(Array.from({ length: 50 }, () => h.admit(caller({}, { budgets: [quota] }))));
    expect(admitted).toHaveLength(10);
    expect(refused).toHaveLength(40);
    expect(refused[0]).toMatchObject({ status: 429, code: "insufficient_quota", type: "insufficient_quota" });
    expect(refused[0]?.message).toContain("the key request quota (10 requests in total)");
    await Promise.all(admitted.map((a) => a.finish({ tokens: 5, spend: 0, requests: 1 })));
    await h.background();
    expect(await counterValue(h.budgetKey(quota))).toBe(10);
  });

  it("let exactly as many of 50 concurrent token reservations through as fit, and keep only what settled requests used", async () => {
    const h = await limitsHarness({ LEASE_SECONDS: "0" });
    const budget: TestBudget = { id: `unit-${crypto.randomUUID()}`, kind: "tokens", period: "day", amount: 100 };
    const { admitted, refused } = await outcomes(Array.from({ length: 50 }, () => h.admit(caller({}, { budgets: [budget] }), { tokens: 10 })));
    expect(admitted).toHaveLength(10);
    expect(refused.every((r) => r.code === "insufficient_quota")).toBe(true);
    const key = h.budgetKey(budget);
    expect(await counterValue(key)).toBe(100);

    const [first, second] = admitted;
    if (!first || !second) throw new Error("expected admissions");
    await first.finish({ tokens: 4, spend: 0, requests: 1 });
    await second.finish(null);
    await first.finish({ tokens: 1, spend: 0, requests: 1 }); // finishing twice changes nothing
    // 4 used, the 8 requests still running reserve 80 (direct reservations once their leases went back).
    await h.background();
    expect(await leased(key)).toBe(0);
    expect(await counterValue(key)).toBe(100 - 6 - 10);
  });
});

describe("settling above the reservation", () => {
  it("charges the real usage in full, so the counter passes the budget and the next request is refused", async () => {
    const h = await limitsHarness();
    const budget: TestBudget = { id: `unit-${crypto.randomUUID()}`, kind: "tokens", period: "day", amount: 100 };
    const who = caller({}, { budgets: [budget] });
    const admission = await h.admit(who, { tokens: 60 });
    // The engine produced more than was reserved (say, a field the gateway did not know about).
    await admission.finish({ tokens: 130, spend: 0, requests: 1 });
    expect(await counterValue(h.budgetKey(budget))).toBe(130);
    const next = await h.refusal(who, { tokens: 1 });
    expect(next).toMatchObject({ status: 429, code: "insufficient_quota" });
    await h.background();
    expect(await counterValue(h.budgetKey(budget))).toBe(130);
  });
});

describe("budgets when Redis is down", () => {
  it("fail closed: the request is refused with a 503 rather than risk overspending", async () => {
    const h = await limitsHarness();
    const budget: TestBudget = { id: "dead", kind: "requests", period: "total", amount: 10 };
    const refused = await h.refusal(caller({ key: { rpm: 100 } }, { budgets: [budget] }), {}, { redis: deadRedis() });
    expect(refused).toMatchObject({ status: 503, code: "dependency_unavailable", type: "api_error" });
    expect(refused.message).toContain("Budgets cannot be checked right now");
    expect(refused.headers["retry-after"]).toBe("2");
    expect(h.logs.map((l) => l.event)).toContain("budgets_fail_closed");
  });

  it("fail closed while the counters are not seeded (the marker is missing)", async () => {
    const h = await limitsHarness({}, { seeded: false });
    const budget: TestBudget = { id: `unit-${crypto.randomUUID()}`, kind: "tokens", period: "month", amount: 1000 };
    const refused = await h.refusal(caller({}, { budgets: [budget] }), { tokens: 10 });
    expect(refused).toMatchObject({ status: 503, code: "dependency_unavailable" });
    expect(await counterValue(h.budgetKey(budget))).toBe(0);
  });
});

describe("budgets at the gateway", () => {
  it("admit exactly 10 of 50 concurrent requests against a request quota of 10, and record the 40 refusals with zero tokens", async () => {
    const { key, keyId } = await keyWith({ budgets: [{ kind: "requests", period: "total", amount: 10 }], keyLimits: { concurrency: 100, rpm: 1000 } });
    const responses = await Promise.all(Array.from({ length: 50 }, () => post("/v1/chat/completions", { model: "sim-llama-8b", messages, max_tokens: 2 }, key)));
    const statuses = await Promise.all(responses.map(async (r) => ({ status: r.status, body: await r.text() })));
    expect(statuses.filter((s) => s.status === 200)).toHaveLength(10);
    const refused = statuses.filter((s) => s.status === 429);
    expect(refused).toHaveLength(40);
    const error = JSON.parse(refused[0]?.body ?? "{}") as { error: { code: string; type: string; message: string } };
    expect(error.error).toMatchObject({ code: "insufficient_quota", type: "insufficient_quota" });
    expect(error.error.message).toContain("request quota");
    const recorded = await eventually(async () => {
      await flushNow();
      const rows = await query((db) =>
        db
          .select({ status: usageRecords.status, n: sql<number>`count(*)::int`, tokens: sql<number>`sum(prompt_tokens + completion_tokens)::int` })
          .from(usageRecords)
          .where(eq(usageRecords.apiKeyId, keyId))
          .groupBy(usageRecords.status),
      );
      return rows.reduce((n, r) => n + r.n, 0) === 50 ? rows : undefined;
    });
    expect(recorded.find((r) => r.status === "ok")?.n).toBe(10);
    expect(recorded.find((r) => r.status === "rejected")).toMatchObject({ n: 40, tokens: 0 });
  });

  it("never spend past a token budget under concurrency (checked against the recorded usage)", async () => {
    const { key, keyId, budgets: [budget] } = await keyWith({ budgets: [{ kind: "tokens", period: "day", amount: 1_500 }], keyLimits: { concurrency: 100, rpm: 1000 } });
    if (!budget) throw new Error("budget missing");
    const responses = await Promise.all(Array.from({ length: 50 }, () => post("/v1/chat/completions", { model: "sim-llama-8b", messages, max_tokens: 20 }, key)));
    const ok = responses.filter((r) => r.status === 200).length;
    await Promise.all(responses.map((r) => r.arrayBuffer()));
    expect(ok).toBeGreaterThan(0);
    expect(ok).toBeLessThan(50);
    const total = await recordedTokens(keyId, 50);
    expect(total).toBeLessThanOrEqual(1_500);
    // Settled: the counter equals what was really used.
    await eventually(async () => ((await counter(budget)) === total ? true : undefined));
  });

  it("give the whole reservation back when the engine fails, and keep only what a cancelled stream used", async () => {
    const { key, budgets: [budget] } = await keyWith({ budgets: [{ kind: "tokens", period: "month", amount: 1_000_000 }] });
    if (!budget) throw new Error("budget missing");
    const failed = await post("/v1/chat/completions", { model: "sim-llama-8b", messages, sim_fault: "engine_error" }, key);
    expect([502, 503]).toContain(failed.status);
    await failed.arrayBuffer();
    await eventually(async () => ((await counter(budget)) === 0 ? true : undefined));

    const stream = await post("/v1/chat/completions", { model: "sim-llama-8b", messages, max_tokens: 200, stream: true, sim_ttft_ms: 1 }, key);
    const reader = (stream.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    await reader.cancel();
    // The reservation (about 300 tokens) shrinks to the few tokens delivered before the cancel.
    const settled = await eventually(async () => {
      const value = await counter(budget);
      return value > 0 && value < 100 ? value : undefined;
    });
    expect(settled).toBeLessThan(100);
  });
});

describe("budgets after Redis lost its data", () => {
  it("fail closed until the scheduled job reseeds the counters from the recorded usage, and a spent budget stays spent", async () => {
    const { key, keyId, budgets: [budget] } = await keyWith({ budgets: [{ kind: "tokens", period: "day", amount: 400 }], keyLimits: { rpm: 1000 } });
    if (!budget) throw new Error("budget missing");
    // ignore_eos: the engine generates all 100 tokens, so usage is known.
    const body = { model: "sim-llama-8b", messages, max_tokens: 100, ignore_eos: true };
    // Spend most of the budget: two requests of about 110 tokens each.
    for (let i = 0; i < 2; i++) {
      const res = await post("/v1/chat/completions", body, key);
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    }
    const used = await recordedTokens(keyId, 2);
    expect(used).toBeGreaterThan(200);

    // Redis comes back empty: the counter and the marker are gone.
    await redis().del(budgetCounter(env.REDIS_PREFIX, budget, new Date()).key, budgetMarkerKey(env.REDIS_PREFIX));
    const refused = await post("/v1/chat/completions", body, key);
    expect(refused.status).toBe(503);
    expect((await refused.json<{ error: { code: string; message: string } }>()).error).toMatchObject({ code: "dependency_unavailable", message: expect.stringContaining("Budgets cannot be checked") as unknown });

    // The scheduled job rebuilds the counter from usage_records: the budget is as spent as before.
    await flushNow();
    expect(await counter(budget)).toBe(used);
    const over = await post("/v1/chat/completions", body, key);
    expect(over.status).toBe(429);
    expect((await over.json<{ error: { code: string } }>()).error.code).toBe("insufficient_quota");
  });
});

describe("rate limits at the gateway", () => {
  it("answers 429 naming the key layer, with Retry-After and OpenAI's headers, and sends the headers on success", async () => {
    const { key } = await keyWith({ keyLimits: { rpm: 2 } });
    const body = { model: "sim-llama-8b", messages, max_tokens: 1 };
    const first = await post("/v1/chat/completions", body, key);
    expect(first.status).toBe(200);
    expect(first.headers.get("x-ratelimit-limit-requests")).toBe("2");
    expect(first.headers.get("x-ratelimit-remaining-requests")).toBe("1");
    await first.arrayBuffer();
    await (await post("/v1/chat/completions", body, key)).arrayBuffer();
    const limited = await post("/v1/chat/completions", body, key);
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(limited.headers.get("x-ratelimit-remaining-requests")).toBe("0");
    const error = await limited.json<{ error: { code: string; type: string; message: string } }>();
    expect(error.error.code).toBe("rate_limit_exceeded");
    expect(error.error.type).toBe("requests");
    expect(error.error.message).toContain("key");
  });
});
