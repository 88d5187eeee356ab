import { and, eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { env } from "cloudflare:test";
import { limitOverrides } from "../../schema/tables/index.ts";
import { keyCacheKey } from "../../worker/src/auth/identity.ts";
import { hashApiKey } from "../../worker/src/auth/keys.ts";
import { budgetCounter, type BudgetEntry } from "../../worker/src/limits/budgets.ts";
import type { CountersJson } from "../../worker/src/admin/wire.ts";
import { routingCacheKey } from "../../worker/src/routing/snapshot.ts";
import { admin, expectStatus, modelsStatusBecomes, sandbox, type ErrorBody, type List } from "./admin-helpers.ts";
import { eventually, query, redis } from "./helpers.ts";

interface Values {
  rpm: number | null;
  tpm: number | null;
  concurrency: number | null;
}
interface Limits {
  object: string;
  scope: string;
  scope_id: string;
  defaults: Values;
  override: Values | null;
  effective: Values;
}
interface Budget extends Omit<BudgetEntry, "scopeId"> {
  object: string;
  scope_id: string;
}
type Counters = CountersJson;

function entry(b: Budget): BudgetEntry {
  return { id: b.id, scope: b.scope, scopeId: b.scope_id, kind: b.kind, period: b.period, amount: b.amount };
}

/** Uses the key, then waits until its identity is cached in Redis (written in waitUntil). */
async function cachedInRedis(key: string, use: () => Promise<unknown> = () => modelsStatusBecomes(key, 200)): Promise<string> {
  await use();
  const cacheKey = keyCacheKey(env.REDIS_PREFIX, await hashApiKey(key));
  await eventually(async () => ((await redis().get(cacheKey)) === null ? undefined : true));
  return cacheKey;
}

describe("limits", () => {
  it("sets, merges, shows and clears a key's limits, dropping the key's cached identity each time", async () => {
    const s = await sandbox();
    const cacheKey = await cachedInRedis(s.key);
    const set = expectStatus(await admin<Limits>("PUT", `/limits/key/${s.keyId}`, { rpm: 5, tpm: 5000 }), 200);
    expect(set).toMatchObject({ object: "limits", scope: "key", scope_id: s.keyId, override: { rpm: 5, tpm: 5000, concurrency: null } });
    expect(set.effective).toEqual({ rpm: 5, tpm: 5000, concurrency: set.defaults.concurrency });
    expect(await redis().get(cacheKey)).toBeNull();

    // Fields left out keep their value; null clears one back to the default.
    await cachedInRedis(s.key);
    const merged = expectStatus(await admin<Limits>("PUT", `/limits/key/${s.keyId}`, { tpm: null, concurrency: 2 }), 200);
    expect(merged.override).toEqual({ rpm: 5, tpm: null, concurrency: 2 });
    expect(merged.effective.tpm).toBe(merged.defaults.tpm);
    expect(await redis().get(cacheKey)).toBeNull();
    expect(expectStatus(await admin<Limits>("GET", `/limits/key/${s.keyId}`), 200)).toEqual(merged);

    const cleared = expectStatus(await admin<Limits>("DELETE", `/limits/key/${s.keyId}`), 200);
    expect(cleared.override).toBeNull();
    expect(cleared.effective).toEqual(cleared.defaults);
    const rows = await query((db) => db.select().from(limitOverrides).where(and(eq(limitOverrides.scope, "key"), eq(limitOverrides.scopeId, s.keyId))));
    expect(rows).toEqual([]);
  });

  it("drops the cached identity of every key of a tenant when the tenant's limits change", async () => {
    const s = await sandbox();
    const cached = [await cachedInRedis(s.key), await cachedInRedis(s.adminKey, () => admin("GET", "/tenants", undefined, s.adminKey))];
    expectStatus(await admin("PUT", `/limits/tenant/${s.tenantId}`, { rpm: 1000, concurrency: 10 }), 200);
    for (const key of cached) expect(await redis().get(key)).toBeNull();
  });

  it("refuses invalid limits with the field named", async () => {
    const s = await sandbox();
    const zero = await admin<ErrorBody>("PUT", `/limits/key/${s.keyId}`, { rpm: 0 });
    expect(zero.body.error).toMatchObject({ code: "invalid_value", param: "rpm" });
    const envConcurrency = await admin<ErrorBody>("PUT", `/limits/environment/${s.environmentId}`, { concurrency: 3 });
    expect(envConcurrency.body.error).toMatchObject({ code: "invalid_value", param: "concurrency" });
    const scope = await admin<ErrorBody>("GET", `/limits/planet/${s.keyId}`);
    expect(scope.body.error).toMatchObject({ code: "invalid_value", param: "scope" });
    const globalId = await admin<ErrorBody>("GET", "/limits/global/everything");
    expect(globalId.body.error).toMatchObject({ code: "invalid_value", param: "scope_id" });
    expect((await admin<ErrorBody>("GET", "/limits/key/key_missing")).status).toBe(404);
  });

  it("sets global limits for the operator and drops the routing snapshot that carries them", async () => {
    await redis().set(routingCacheKey(env.REDIS_PREFIX), { stale: true });
    const set = expectStatus(await admin<Limits>("PUT", "/limits/global/global", { rpm: 1_000_000 }), 200);
    expect(set).toMatchObject({ scope: "global", scope_id: "global", override: { rpm: 1_000_000, tpm: null, concurrency: null } });
    expect(await redis().get(routingCacheKey(env.REDIS_PREFIX))).toBeNull();
    expect(expectStatus(await admin<Limits>("DELETE", "/limits/global/global"), 200).override).toBeNull();
  });
});

describe("budgets and counters", () => {
  it("adds, lists, changes and deletes budgets; a duplicate is a 409", async () => {
    const s = await sandbox();
    const cacheKey = await cachedInRedis(s.key);
    const body = { scope: "environment", scope_id: s.environmentId, kind: "tokens", period: "month", amount: 1_000_000 };
    const created = expectStatus(await admin<Budget>("POST", "/budgets", body), 201);
    expect(created).toMatchObject({ object: "budget", ...body });
    expect(created.id).toMatch(/^bud_/);
    expect(await redis().get(cacheKey)).toBeNull();

    const duplicate = await admin<ErrorBody>("POST", "/budgets", body);
    expect(duplicate.status).toBe(409);
    expect(duplicate.body.error.code).toBe("conflict");
    const keyBudget = expectStatus(await admin<Budget>("POST", "/budgets", { scope: "key", scope_id: s.keyId, kind: "requests", period: "total", amount: 3 }), 201);

    const forEnv = expectStatus(await admin<List<Budget>>("GET", `/budgets?scope=environment&scope_id=${s.environmentId}`), 200);
    expect(forEnv.data).toEqual([created]);
    const mine = expectStatus(await admin<List<Budget>>("GET", "/budgets?limit=200", undefined, s.adminKey), 200);
    expect(mine.data.map((b) => b.id).sort()).toEqual([created.id, keyBudget.id].sort());
    const half = await admin<ErrorBody>("GET", "/budgets?scope=key");
    expect(half.body.error).toMatchObject({ code: "invalid_value", param: "scope_id" });

    expect(expectStatus(await admin<Budget>("PATCH", `/budgets/${created.id}`, { amount: 2_000_000 }), 200)).toMatchObject({ id: created.id, amount: 2_000_000 });
    expect(expectStatus(await admin("DELETE", `/budgets/${created.id}`), 200)).toEqual({ object: "budget", id: created.id, deleted: true });
    expect((await admin("GET", `/budgets/${created.id}`)).status).toBe(404);
    expect(expectStatus(await admin<List<Budget>>("GET", `/budgets?scope=environment&scope_id=${s.environmentId}`), 200).data).toEqual([]);
  });

  it("shows each budget's usage in its current period and the entity's limits", async () => {
    const s = await sandbox();
    const tokens = expectStatus(await admin<Budget>("POST", "/budgets", { scope: "key", scope_id: s.keyId, kind: "tokens", period: "day", amount: 10_000 }), 201);
    const requests = expectStatus(await admin<Budget>("POST", "/budgets", { scope: "key", scope_id: s.keyId, kind: "requests", period: "total", amount: 100 }), 201);
    expectStatus(await admin("PUT", `/limits/key/${s.keyId}`, { rpm: 7 }), 200);

    // What admission writes (limits/lease-scripts.ts), simulated directly: the tokens counter holds
    // 1,234, of which 200 are an isolate's lease (its record lives a minute more) and 50 a lease
    // Redis may take back (expired record, not counted as leased); the key's request bucket has 4 of
    // 7 left, 2 of them granted to a lease.
    const tokensKey = budgetCounter(env.REDIS_PREFIX, entry(tokens), new Date()).key;
    await redis().set(tokensKey, 1234);
    await redis().hset(`${tokensKey}:lease`, { "iso1.1": 200, "iso1.1:e": Date.now() + 60_000, "iso2.1": 50, "iso2.1:e": Date.now() - 1_000 });
    await redis().incrby(budgetCounter(env.REDIS_PREFIX, entry(requests), new Date()).key, 3);
    await redis().hset(`${env.REDIS_PREFIX}rl:req:key:${s.keyId}`, { refilledAt: Date.now(), tokens: 4 });
    await redis().hset(`${env.REDIS_PREFIX}rl:req:key:${s.keyId}:lease`, { "iso1.2": 2, "iso1.2:e": Date.now() + 60_000 });

    const counters = expectStatus(await admin<Counters>("GET", `/counters/key/${s.keyId}`), 200);
    expect(counters.object).toBe("counters");
    expect(counters.budgets).toEqual([
      { budget: tokens, used: 1034, leased: 200, free: 10_000 - 1234, remaining: 10_000 - 1234 },
      { budget: requests, used: 3, leased: 0, free: 97, remaining: 97 },
    ].sort((a, b) => a.budget.id.localeCompare(b.budget.id)));
    expect(counters.limits).toMatchObject({ scope: "key", override: { rpm: 7 }, effective: { rpm: 7 } });
    expect(counters.live.requests_per_minute).toEqual({ limit: 7, used: 1, leased: 2, free: 4 });
    expect(counters.live.concurrency).toMatchObject({ limit: Number(env.LIMIT_KEY_CONCURRENCY), used: 0, leased: 0 });

    const tenantCounters = expectStatus(await admin<Counters>("GET", `/counters/tenant/${s.tenantId}`, undefined, s.adminKey), 200);
    expect(tenantCounters.budgets).toEqual([]);
    expect(tenantCounters.limits.override).toBeNull();

    // Deleting a budget deletes its counter and its leases' records too.
    expectStatus(await admin("DELETE", `/budgets/${tokens.id}`), 200);
    expect(await redis().get(tokensKey)).toBeNull();
    expect(await redis().exists(`${tokensKey}:lease`)).toBe(0);
  });
});
