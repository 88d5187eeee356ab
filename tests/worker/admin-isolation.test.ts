import { describe, expect, it } from "vitest";
import { admin, expectStatus, sandbox, type ErrorBody, type KeyJson, type List } from "./admin-helpers.ts";

describe("a tenant admin key", () => {
  it("gets 404 for everything of another tenant, exactly as for things that do not exist", async () => {
    const a = await sandbox();
    const b = await sandbox();
    const budget = expectStatus(await admin<{ id: string }>("POST", "/budgets", { scope: "key", scope_id: b.keyId, kind: "tokens", period: "day", amount: 10 }), 201);
    const as = (method: string, path: string, body?: unknown) => admin<ErrorBody>(method, path, body, a.adminKey);

    const attempts: [string, string, unknown?][] = [
      ["GET", `/tenants/${b.tenantId}`],
      ["PATCH", `/tenants/${b.tenantId}`, { name: "mine now" }],
      ["GET", `/environments/${b.environmentId}`],
      ["PATCH", `/environments/${b.environmentId}`, { name: "mine" }],
      ["DELETE", `/environments/${b.environmentId}`],
      ["GET", `/environments?tenant_id=${b.tenantId}`],
      ["POST", "/environments", { tenant_id: b.tenantId, name: "intruder" }],
      ["GET", `/keys/${b.keyId}`],
      ["GET", `/keys?tenant_id=${b.tenantId}`],
      ["GET", `/keys?environment_id=${b.environmentId}`],
      ["POST", "/keys", { environment_id: b.environmentId, name: "backdoor", scopes: ["admin"] }],
      ["POST", `/keys/${b.keyId}/rotate`],
      ["POST", `/keys/${b.keyId}/revoke`],
      ["GET", `/limits/tenant/${b.tenantId}`],
      ["GET", `/limits/key/${b.keyId}`],
      ["PUT", `/limits/environment/${b.environmentId}`, { rpm: 1 }],
      ["DELETE", `/limits/key/${b.keyId}`],
      ["GET", `/budgets?scope=tenant&scope_id=${b.tenantId}`],
      ["GET", `/budgets/${budget.id}`],
      ["POST", "/budgets", { scope: "key", scope_id: b.keyId, kind: "requests", period: "day", amount: 1 }],
      ["PATCH", `/budgets/${budget.id}`, { amount: 1_000_000 }],
      ["DELETE", `/budgets/${budget.id}`],
      ["GET", `/counters/key/${b.keyId}`],
      ["GET", `/counters/tenant/${b.tenantId}`],
      ["GET", `/audit?tenant_id=${b.tenantId}`],
    ];
    for (const [method, path, body] of attempts) {
      const res = await as(method, path, body);
      expect({ method, path, status: res.status, code: res.body.error.code }).toEqual({ method, path, status: 404, code: "not_found" });
    }
    // Same answer as for an id that does not exist at all.
    const missing = await as("GET", "/tenants/ten_00000000000000000000");
    const foreign = await as("GET", `/tenants/${b.tenantId}`);
    expect(foreign.body.error.message.replace(b.tenantId, "ID")).toBe(missing.body.error.message.replace("ten_00000000000000000000", "ID"));

    // Nothing of B changed.
    const keysOfB = expectStatus(await admin<List<KeyJson>>("GET", `/keys?tenant_id=${b.tenantId}`), 200);
    expect(keysOfB.data.map((k) => k.status)).toEqual(["active", "active"]);
    expect(keysOfB.data.map((k) => k.name).sort()).toEqual(["app", "ops"]);
  });

  it("lists only its own tenant's environments, keys, budgets and audit entries", async () => {
    const a = await sandbox();
    const b = await sandbox();
    expectStatus(await admin("POST", "/budgets", { scope: "key", scope_id: a.keyId, kind: "tokens", period: "day", amount: 10 }), 201);
    expectStatus(await admin("POST", "/budgets", { scope: "key", scope_id: b.keyId, kind: "tokens", period: "day", amount: 10 }), 201);
    const as = <T>(path: string) => admin<List<T>>("GET", path, undefined, a.adminKey);

    const envs = expectStatus(await as<{ tenant_id: string }>("/environments?limit=200"), 200);
    expect(envs.data.map((e) => e.tenant_id)).toEqual([a.tenantId]);
    const keys = expectStatus(await as<KeyJson>("/keys?limit=200"), 200);
    expect(keys.data.map((k) => k.id).sort()).toEqual([a.keyId, a.adminKeyId].sort());
    const budgets = expectStatus(await as<{ scope_id: string }>("/budgets?limit=200"), 200);
    expect(budgets.data.map((x) => x.scope_id)).toEqual([a.keyId]);
    const audit = expectStatus(await as<{ tenant_id: string }>("/audit?limit=200"), 200);
    expect(audit.data.length).toBeGreaterThan(0);
    expect(new Set(audit.data.map((x) => x.tenant_id))).toEqual(new Set([a.tenantId]));
  });

  it("manages its own environments, keys and their limits and budgets, but not its tenant's own limits or budgets", async () => {
    const a = await sandbox();
    const as = (method: string, path: string, body?: unknown) => admin<ErrorBody>(method, path, body, a.adminKey);
    const env = expectStatus(await admin<{ id: string }>("POST", "/environments", { tenant_id: a.tenantId, name: "dev" }, a.adminKey), 201);
    const key = expectStatus(await admin<KeyJson>("POST", "/keys", { environment_id: env.id, name: "dev-key" }, a.adminKey), 201);
    expect(key.key).toMatch(/^sk-sy-/);
    expectStatus(await as("PUT", `/limits/key/${key.id}`, { rpm: 10 }), 200);
    expectStatus(await as("PUT", `/limits/environment/${env.id}`, { tpm: 1000 }), 200);
    expectStatus(await as("POST", "/budgets", { scope: "environment", scope_id: env.id, kind: "spend", period: "month", amount: 5_000_000 }), 201);
    expectStatus(await as("GET", `/limits/tenant/${a.tenantId}`), 200);
    expectStatus(await as("GET", `/counters/tenant/${a.tenantId}`), 200);

    for (const [method, path, body] of [
      ["PUT", `/limits/tenant/${a.tenantId}`, { rpm: 1_000_000 }],
      ["DELETE", `/limits/tenant/${a.tenantId}`, undefined],
      ["POST", "/budgets", { scope: "tenant", scope_id: a.tenantId, kind: "tokens", period: "day", amount: 1 }],
      ["GET", "/limits/global/global", undefined],
      ["PUT", "/limits/global/global", { rpm: 1 }],
    ] as const) {
      const res = await as(method, path, body);
      expect({ path, status: res.status, code: res.body.error.code }).toEqual({ path, status: 403, code: "permission_denied" });
    }
    expectStatus(await as("DELETE", `/environments/${env.id}`), 200);
  });
});
