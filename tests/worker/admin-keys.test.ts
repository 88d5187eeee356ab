import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { env } from "cloudflare:test";
import { apiKeys, auditLogs } from "../../schema/tables/index.ts";
import { keyCacheKey } from "../../worker/src/auth/identity.ts";
import { hashApiKey } from "../../worker/src/auth/keys.ts";
import { admin, expectStatus, modelsStatusBecomes, sandbox, type ErrorBody, type KeyJson, type List } from "./admin-helpers.ts";
import { eventually, gateway, query, redis } from "./helpers.ts";

describe("API keys", () => {
  it("shows a new key exactly once, then only its prefix, and never its hash", async () => {
    const s = await sandbox();
    const expires = new Date(Date.now() + 86_400_000).toISOString();
    const res = await admin<KeyJson>("POST", "/keys", { environment_id: s.environmentId, name: "ci", scopes: ["chat"], allowed_models: ["sim-llama-8b"], expires_at: expires });
    const created = expectStatus(res, 201);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(created.key).toMatch(/^sk-sy-[A-Za-z0-9_-]{43}$/);
    const key = created.key ?? "";
    expect(created).toMatchObject({
      object: "api_key",
      tenant_id: s.tenantId,
      environment_id: s.environmentId,
      name: "ci",
      prefix: key.slice(0, 12),
      scopes: ["chat"],
      allowed_models: ["sim-llama-8b"],
      expires_at: expires,
      revoked_at: null,
      status: "active",
    });

    const hash = await hashApiKey(key);
    const shown = expectStatus(await admin<KeyJson>("GET", `/keys/${created.id}`), 200);
    const listed = expectStatus(await admin<List<KeyJson>>("GET", `/keys?environment_id=${s.environmentId}`), 200);
    const byTenant = expectStatus(await admin<List<KeyJson>>("GET", `/keys?tenant_id=${s.tenantId}&limit=1`), 200);
    const audit = expectStatus(await admin<List<unknown>>("GET", `/audit?target_id=${created.id}`), 200);
    const { key: _shownOnce, ...metadata } = created;
    expect(shown).toEqual(metadata);
    expect(listed.data.map((k) => k.id).sort()).toEqual([s.keyId, s.adminKeyId, created.id].sort());
    expect(byTenant.data).toHaveLength(1);
    expect(byTenant.next_cursor).not.toBeNull();
    for (const body of [shown, listed, byTenant, audit]) {
      const text = JSON.stringify(body);
      expect(text).not.toContain(key);
      expect(text).not.toContain(hash);
      expect(text).not.toContain('"hash"');
    }
    const [row] = await query((db) => db.select().from(apiKeys).where(eq(apiKeys.id, created.id)));
    expect(row?.hash).toBe(hash);
    expect((await gateway("/v1/models", { key })).status).toBe(200);
  });

  it("refuses bad key requests with the field named", async () => {
    const s = await sandbox();
    const scope = await admin<ErrorBody>("POST", "/keys", { environment_id: s.environmentId, name: "x", scopes: ["root"] });
    expect(scope.body.error).toMatchObject({ code: "invalid_value", param: "scopes.0" });
    const past = await admin<ErrorBody>("POST", "/keys", { environment_id: s.environmentId, name: "x", expires_at: "2001-01-01T00:00:00Z" });
    expect(past.body.error).toMatchObject({ code: "invalid_value", param: "expires_at" });
    const env404 = await admin<ErrorBody>("POST", "/keys", { environment_id: "env_missing", name: "x" });
    expect(env404.status).toBe(404);
  });

  it("rotates a key: the new key works at once, the old one until the overlap ends, then 401", async () => {
    const s = await sandbox();
    expectStatus(await admin("PUT", `/limits/key/${s.keyId}`, { rpm: 123, concurrency: 4 }), 200);
    await modelsStatusBecomes(s.key, 200);

    const res = await admin<KeyJson & { rotated_from: KeyJson }>("POST", `/keys/${s.keyId}/rotate`, { overlap_seconds: 2 });
    const rotated = expectStatus(res, 201);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(rotated).toMatchObject({ environment_id: s.environmentId, name: "app", scopes: ["chat", "embeddings"], allowed_models: null, status: "active" });
    expect(rotated.id).not.toBe(s.keyId);
    expect(rotated.key).not.toBe(s.key);
    const oldExpiry = Date.parse(rotated.rotated_from.expires_at ?? "");
    expect(oldExpiry - Date.now()).toBeGreaterThan(0);
    expect(oldExpiry - Date.now()).toBeLessThanOrEqual(2_000);
    // The key's limits come along.
    expect(expectStatus(await admin<{ override: unknown }>("GET", `/limits/key/${rotated.id}`), 200).override).toEqual({ rpm: 123, tpm: null, concurrency: 4 });

    expect((await gateway("/v1/models", { key: rotated.key ?? "" })).status).toBe(200);
    expect((await gateway("/v1/models", { key: s.key })).status).toBe(200);
    const stopped = await modelsStatusBecomes(s.key, 401, 6_000);
    // Not before the overlap ended (2 s), and within 5 s of it.
    expect(Date.now()).toBeGreaterThanOrEqual(oldExpiry);
    expect(stopped.elapsedMs).toBeLessThan(2_000 + 5_000);
    expect((await gateway("/v1/models", { key: rotated.key ?? "" })).status).toBe(200);

    const again = await admin<ErrorBody>("POST", `/keys/${s.keyId}/rotate`);
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe("conflict");
  });

  it("revokes a key: its Redis entry goes at once and the gateway answers 401 within 5 s", async () => {
    const s = await sandbox();
    await modelsStatusBecomes(s.key, 200);
    const cacheKey = keyCacheKey(env.REDIS_PREFIX, await hashApiKey(s.key));
    await eventually(async () => ((await redis().get(cacheKey)) === null ? undefined : true));

    const revoked = expectStatus(await admin<KeyJson>("POST", `/keys/${s.keyId}/revoke`), 200);
    expect(revoked).toMatchObject({ id: s.keyId, status: "revoked" });
    expect(revoked.revoked_at).not.toBeNull();
    expect(await redis().get(cacheKey)).toBeNull();
    const refused = await modelsStatusBecomes(s.key, 401);
    expect(refused.elapsedMs).toBeLessThan(5_000);
    expect(refused.body).toMatchObject({ error: { code: "invalid_api_key" } });

    // Revoking again changes nothing and writes no second audit row.
    expect(expectStatus(await admin<KeyJson>("POST", `/keys/${s.keyId}/revoke`), 200).revoked_at).toBe(revoked.revoked_at);
    const rows = await query((db) => db.select().from(auditLogs).where(eq(auditLogs.targetId, s.keyId)));
    expect(rows.map((r) => r.action).sort()).toEqual(["api_key.create", "api_key.revoke"]);
    // The tenant's other keys keep working.
    expect((await admin("GET", "/tenants", undefined, s.adminKey)).status).toBe(200);
  });
});
