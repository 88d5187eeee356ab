import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { inArray } from "drizzle-orm";
import { beforeEach, describe, expect, it } from "vitest";
import { inject } from "vitest";
import { budgets, usageRecords } from "../../schema/tables/index.ts";
import { createEnvironment, createTenant, newId } from "../../worker/src/admin/store.ts";
import { generateApiKey } from "../../worker/src/auth/keys.ts";
import worker from "../../worker/src/index.ts";
import { clearIsolateCaches } from "../../worker/src/platform/hot-state.ts";
import { routingCacheKey } from "../../worker/src/routing/snapshot.ts";
import { createApiKey, flushNow, query, redis } from "./helpers.ts";

// These tests call the worker's fetch handler with altered bindings to take Redis or Postgres away
// mid-traffic, in the same isolate (so its caches carry over, as in production).
const messages = [{ role: "user", content: "hi" }];
const DEAD = "http://127.0.0.1:9";

type Bindings = typeof env;

async function call(bindings: Bindings, key: string, body: unknown = { model: "sim-llama-8b", messages, max_tokens: 3 }, path = "/v1/chat/completions"): Promise<{ status: number; requestId: string | null; text: string }> {
  const ctx = createExecutionContext();
  const res = await worker.fetch(
    new Request(`http://gateway.test${path}`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: JSON.stringify(body) }),
    bindings,
    ctx,
  );
  const text = await res.text();
  // Waits for the request's waitUntil work too (usage delivery, cache writes).
  await waitOnExecutionContext(ctx);
  return { status: res.status, requestId: res.headers.get("x-request-id"), text };
}

async function dbSessions(): Promise<number> {
  const res = await fetch(inject("statsUrl"));
  return (await res.json<{ connections: number }>()).connections;
}

async function freshKey(withBudget = false): Promise<{ key: string; tenantId: string }> {
  return query(async (db) => {
    const tenant = await createTenant(db, "test", { name: `outage-${crypto.randomUUID().slice(0, 8)}` });
    const environment = await createEnvironment(db, "test", { tenantId: tenant.id, name: "prod" });
    const key = await createApiKey(db, "test", { tenantId: tenant.id, environmentId: environment.id, name: "k" });
    if (withBudget) await db.insert(budgets).values({ id: newId("bud"), scope: "key", scopeId: key.id, kind: "tokens", period: "day", amount: 1_000_000 });
    return { key: key.key, tenantId: tenant.id };
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeEach(() => clearIsolateCaches());

describe("bad keys", () => {
  it("refuses malformed and unknown keys with the same 401 and never opens a database session", async () => {
    await flushNow(); // the scheduled job builds the active-key set
    expect((await call(env, inject("keys").valid)).status).toBe(200); // the routing view is warm
    const before = await dbSessions();
    const answers = new Set<string>();
    for (const key of [...Array.from({ length: 15 }, () => generateApiKey()), "sk-sy-short", "not-a-key", "x".repeat(300), "sk-sy-" + "!".repeat(43)]) {
      const res = await call(env, key);
      expect(res.status).toBe(401);
      answers.add((JSON.parse(res.text) as { error: { message: string } }).error.message);
    }
    expect(answers.size).toBe(1);
    await sleep(300);
    expect((await dbSessions()) - before).toBe(0);
  });

  it("still admits a key created behind the set's back once the scheduled job rebuilt the set", async () => {
    await flushNow();
    const created = await query(async (db) => {
      const { createApiKey: storeKey } = await import("../../worker/src/admin/store.ts");
      const tenant = await createTenant(db, "test", { name: "direct" });
      const environment = await createEnvironment(db, "test", { tenantId: tenant.id, name: "prod" });
      return storeKey(db, "test", { tenantId: tenant.id, environmentId: environment.id, name: "direct" });
    });
    expect((await call(env, created.key)).status).toBe(401);
    await flushNow();
    clearIsolateCaches();
    expect((await call(env, created.key)).status).toBe(200);
  });
});

describe("a burst on a key nobody has cached yet", () => {
  it("answers every request and opens one database session for the key, not one per request", async () => {
    const fresh = await freshKey();
    expect((await call(env, inject("keys").valid)).status).toBe(200); // the routing view is warm
    const before = await dbSessions();
    // 30: under the key's default in-flight cap (LIMIT_KEY_CONCURRENCY, 32).
    const answers = await Promise.all(Array.from({ length: 30 }, () => call(env, fresh.key, { model: "sim-llama-8b", messages, max_tokens: 1 })));
    expect(answers.filter((a) => a.status !== 200).map((a) => a.text)).toEqual([]);
    await sleep(300);
    // One lookup for the key (single-flight); the routing snapshot may be reloaded once too.
    expect((await dbSessions()) - before).toBeLessThanOrEqual(2);
  });
});

describe("when Redis goes away", () => {
  it("keeps serving from the last routing view, fails budgets closed, and meters every request it served", async () => {
    const plain = await freshKey();
    const budgeted = await freshKey(true);
    // Warm this isolate's view of both keys and the nodes.
    expect((await call(env, plain.key)).status).toBe(200);
    expect((await call(env, budgeted.key)).status).toBe(200);

    const down: Bindings = { ...env, UPSTASH_REDIS_REST_URL: DEAD };
    const served: string[] = [];
    const started = Date.now();
    // Longer than the isolate caches (1 s in the test bindings) and three heartbeat-free seconds.
    while (Date.now() - started < 3_000) {
      const res = await call(down, plain.key);
      expect(res.status, res.text).toBe(200);
      if (res.requestId) served.push(res.requestId);
    }
    const refused = await call(down, budgeted.key);
    expect(refused.status).toBe(503);
    expect((JSON.parse(refused.text) as { error: { message: string } }).error.message).toMatch(/Budgets cannot be checked/);

    // Redis is back: everything served during the outage is in usage_records.
    expect((await call(env, plain.key)).status).toBe(200);
    await flushNow();
    const recorded = await query((db) => db.select({ id: usageRecords.id }).from(usageRecords).where(inArray(usageRecords.id, served)));
    expect(served.length).toBeGreaterThan(3);
    expect(recorded.length).toBe(served.length);
  });

  it("answers within the Redis deadline when Redis hangs instead of refusing", async () => {
    const plain = await freshKey();
    expect((await call(env, plain.key)).status).toBe(200);
    await sleep(1_100); // past the isolate caches: the request must ask Redis
    const hanging: Bindings = { ...env, UPSTASH_REDIS_REST_URL: inject("blackholeUrl"), REDIS_TIMEOUT_MS: "300", LIMITS_TIMEOUT_MS: "300" };
    const t0 = Date.now();
    const res = await call(hanging, plain.key);
    expect(res.status, res.text).toBe(200);
    // The hot-state read, the admission scripts and the request's end writes each wait at most 300 ms.
    expect(Date.now() - t0).toBeLessThan(15_000);
  });
});

describe("when Postgres goes away", () => {
  it("serves cached keys from the last routing snapshot after its fresh copy expired, and at once when Postgres returns", async () => {
    const plain = await freshKey();
    expect((await call(env, plain.key)).status).toBe(200);
    const down: Bindings = { ...env, NEON_WS_PROXY: "ws://127.0.0.1:9/v2" };
    // The fresh snapshot copy expires (ROUTING_CACHE_REDIS_SECONDS) and the isolate forgets its view.
    await redis().del(routingCacheKey(env.REDIS_PREFIX));
    clearIsolateCaches();
    for (let i = 0; i < 3; i++) {
      const res = await call(down, plain.key);
      expect(res.status, res.text).toBe(200);
    }
    // A key nobody has seen cannot be checked without Postgres.
    const unseen = await freshKey();
    const refused = await call(down, unseen.key);
    expect(refused.status).toBe(503);
    expect((JSON.parse(refused.text) as { error: { code: string } }).error.code).toBe("dependency_unavailable");

    await redis().del(routingCacheKey(env.REDIS_PREFIX));
    clearIsolateCaches();
    const back = await call(env, unseen.key);
    expect(back.status, back.text).toBe(200);
  });
});
