import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { env } from "cloudflare:test";
import { apiKeys, budgets, environments, limitOverrides } from "../../schema/tables/index.ts";
import { keyCacheKey } from "../../worker/src/auth/identity.ts";
import { hashApiKey } from "../../worker/src/auth/keys.ts";
import { admin, expectStatus, modelsStatusBecomes, sandbox, unique, type ErrorBody, type JsonResponse, type List } from "./admin-helpers.ts";
import { eventually, gateway, query, redis } from "./helpers.ts";

interface Tenant {
  object: string;
  id: string;
  name: string;
  plan: string;
  status: string;
  created_at: string;
}
interface Environment {
  object: string;
  id: string;
  tenant_id: string;
  name: string;
  pinned_region: string | null;
}

/** Follows next_cursor through every page of `path`, `limit` items at a time. */
async function allPages<T extends { id: string }>(path: string, limit: number): Promise<{ ids: string[]; pages: number }> {
  const ids: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const sep = path.includes("?") ? "&" : "?";
    const res: JsonResponse<List<T>> = await admin<List<T>>("GET", `${path}${sep}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    const body: List<T> = expectStatus(res, 200);
    expect(body.object).toBe("list");
    expect(body.data.length).toBeLessThanOrEqual(limit);
    ids.push(...body.data.map((d) => d.id));
    cursor = body.next_cursor;
    pages++;
  } while (cursor !== null);
  return { ids, pages };
}

describe("tenants", () => {
  it("round-trips a tenant: create, list page by page, show, update, delete", async () => {
    const created = expectStatus(await admin<Tenant>("POST", "/tenants", { name: "  Round Trip  ", plan: "pro" }), 201);
    expect(created).toMatchObject({ object: "tenant", name: "Round Trip", plan: "pro", status: "active" });
    expect(created.id).toMatch(/^ten_[0-9a-f]{20}$/);
    const more = [];
    for (let i = 0; i < 3; i++) more.push(expectStatus(await admin<Tenant>("POST", "/tenants", { name: unique("paged") }), 201).id);

    const { ids, pages } = await allPages<Tenant>("/tenants", 2);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toEqual(expect.arrayContaining([created.id, ...more]));
    expect(ids).toEqual([...ids].sort());
    expect(pages).toBeGreaterThanOrEqual(3);

    expect(expectStatus(await admin<Tenant>("GET", `/tenants/${created.id}`), 200)).toEqual(created);
    const updated = expectStatus(await admin<Tenant>("PATCH", `/tenants/${created.id}`, { name: "Renamed", plan: "enterprise" }), 200);
    expect(updated).toMatchObject({ id: created.id, name: "Renamed", plan: "enterprise", status: "active" });

    expect(expectStatus(await admin("DELETE", `/tenants/${created.id}`), 200)).toEqual({ object: "tenant", id: created.id, deleted: true });
    const gone = await admin<ErrorBody>("GET", `/tenants/${created.id}`);
    expect(gone.status).toBe(404);
    expect(gone.body.error.code).toBe("not_found");
  });

  it("names the field of an invalid body and refuses unknown fields, bad JSON and bad cursors", async () => {
    const missing = await admin<ErrorBody>("POST", "/tenants", {});
    expect(missing.status).toBe(400);
    expect(missing.body.error).toMatchObject({ code: "invalid_value", param: "name" });
    const unknownField = await admin<ErrorBody>("POST", "/tenants", { name: "x", colour: "red" });
    expect(unknownField.body.error).toMatchObject({ code: "invalid_value", param: "colour" });
    const status = await admin<ErrorBody>("PATCH", "/tenants/ten_x", { status: "deleted" });
    expect(status.body.error).toMatchObject({ code: "invalid_value", param: "status" });
    const json = await admin<ErrorBody>("POST", "/tenants", "{not json");
    expect(json.status).toBe(400);
    expect(json.body.error.code).toBe("invalid_json");
    const cursor = await admin<ErrorBody>("GET", "/tenants?cursor=garbage");
    expect(cursor.body.error).toMatchObject({ code: "invalid_value", param: "cursor" });
    const limit = await admin<ErrorBody>("GET", "/tenants?limit=201");
    expect(limit.body.error).toMatchObject({ code: "invalid_value", param: "limit" });
  });

  it("suspends a tenant: its keys get 403 tenant_suspended within 5 s, and resuming restores them", async () => {
    const s = await sandbox();
    await modelsStatusBecomes(s.key, 200);
    // The key's identity is now cached in Redis too (written in waitUntil).
    const cacheKey = keyCacheKey(env.REDIS_PREFIX, await hashApiKey(s.key));
    await eventually(async () => ((await redis().get(cacheKey)) === null ? undefined : true));

    const suspended = expectStatus(await admin<Tenant>("POST", `/tenants/${s.tenantId}/suspend`), 200);
    expect(suspended.status).toBe("suspended");
    // The Redis entry is gone before the admin call answers, so no isolate can keep the old state past its own cache.
    expect(await redis().get(cacheKey)).toBeNull();
    const refused = await modelsStatusBecomes(s.key, 403);
    expect(refused.elapsedMs).toBeLessThan(5_000);
    expect(refused.body).toMatchObject({ error: { code: "tenant_suspended" } });

    expect(expectStatus(await admin<Tenant>("POST", `/tenants/${s.tenantId}/resume`), 200).status).toBe("active");
    expect((await modelsStatusBecomes(s.key, 200)).elapsedMs).toBeLessThan(5_000);
  });

  it("deletes a tenant with its environments, keys, limits and budgets, and its keys stop working", async () => {
    const s = await sandbox();
    expectStatus(await admin("PUT", `/limits/key/${s.keyId}`, { rpm: 100 }), 200);
    expectStatus(await admin("POST", "/budgets", { scope: "environment", scope_id: s.environmentId, kind: "tokens", period: "month", amount: 1000 }), 201);
    await modelsStatusBecomes(s.key, 200);

    expectStatus(await admin("DELETE", `/tenants/${s.tenantId}`), 200);
    await modelsStatusBecomes(s.key, 401);
    const left = await query(async (db) => ({
      envs: await db.select().from(environments).where(eq(environments.tenantId, s.tenantId)),
      keys: await db.select().from(apiKeys).where(eq(apiKeys.tenantId, s.tenantId)),
      limits: await db.select().from(limitOverrides).where(eq(limitOverrides.scopeId, s.keyId)),
      budgets: await db.select().from(budgets).where(eq(budgets.scopeId, s.environmentId)),
    }));
    expect(left).toEqual({ envs: [], keys: [], limits: [], budgets: [] });
  });
});

describe("environments", () => {
  it("round-trips an environment: create, list by tenant page by page, show, update, delete", async () => {
    const s = await sandbox();
    const created = expectStatus(await admin<Environment>("POST", "/environments", { tenant_id: s.tenantId, name: "staging", pinned_region: "local" }), 201);
    expect(created).toMatchObject({ object: "environment", tenant_id: s.tenantId, name: "staging", pinned_region: "local" });
    const dev = expectStatus(await admin<Environment>("POST", "/environments", { tenant_id: s.tenantId, name: "dev" }), 201);

    const duplicate = await admin<ErrorBody>("POST", "/environments", { tenant_id: s.tenantId, name: "staging" });
    expect(duplicate.status).toBe(409);
    expect(duplicate.body.error).toMatchObject({ code: "conflict", param: "name" });
    const badRegion = await admin<ErrorBody>("POST", "/environments", { tenant_id: s.tenantId, name: "x", pinned_region: "mars-1" });
    expect(badRegion.body.error).toMatchObject({ code: "invalid_value", param: "pinned_region" });

    const { ids, pages } = await allPages<Environment>(`/environments?tenant_id=${s.tenantId}`, 2);
    expect(ids.sort()).toEqual([s.environmentId, created.id, dev.id].sort());
    expect(pages).toBe(2);

    expect(expectStatus(await admin<Environment>("GET", `/environments/${created.id}`), 200)).toEqual(created);
    const updated = expectStatus(await admin<Environment>("PATCH", `/environments/${created.id}`, { name: "stage", pinned_region: null }), 200);
    expect(updated).toMatchObject({ id: created.id, name: "stage", pinned_region: null });

    const key = expectStatus(await admin<{ key: string }>("POST", "/keys", { environment_id: created.id, name: "k" }), 201);
    await modelsStatusBecomes(key.key, 200);
    expectStatus(await admin("DELETE", `/environments/${created.id}`), 200);
    expect((await admin("GET", `/environments/${created.id}`)).status).toBe(404);
    await modelsStatusBecomes(key.key, 401);
    // The tenant's other environment is untouched.
    expect((await gateway("/v1/models", { key: s.key })).status).toBe(200);
  });
});
