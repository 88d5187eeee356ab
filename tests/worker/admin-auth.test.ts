import { describe, expect, it } from "vitest";
import { inject } from "vitest";
import { admin, expectStatus, sandbox, type ErrorBody, type List } from "./admin-helpers.ts";

describe("admin API authentication", () => {
  it("answers 401 missing_api_key without credentials", async () => {
    const res = await admin<ErrorBody>("GET", "/tenants", undefined, null);
    expect(res.status).toBe(401);
    expect(res.body.error).toMatchObject({ code: "missing_api_key", type: "invalid_request_error" });
  });

  it("answers 401 invalid_api_key for a wrong token, one character off or of another length", async () => {
    const token = inject("adminToken");
    const offByOne = token.slice(0, -1) + (token.endsWith("0") ? "1" : "0");
    for (const wrong of [offByOne, `${token}x`, "short", "sk-sy-" + "A".repeat(43)]) {
      const res = await admin<ErrorBody>("GET", "/tenants", undefined, wrong);
      expect(res.status).toBe(401);
      expect(res.body.error.code).toBe("invalid_api_key");
    }
  });

  it("answers 403 permission_denied to a valid key without the admin scope", async () => {
    const res = await admin<ErrorBody>("GET", "/tenants", undefined, inject("keys").valid);
    expect(res.status).toBe(403);
    expect(res.body.error).toMatchObject({ code: "permission_denied", type: "permission_error" });
    expect(res.body.error.message).toContain("admin scope");
  });

  it("lets the operator token see every tenant and an admin key see its own tenant only", async () => {
    const a = await sandbox();
    await sandbox();
    const asOperator = expectStatus(await admin<List<{ id: string }>>("GET", "/tenants?limit=200"), 200);
    expect(asOperator.data.map((t) => t.id)).toContain(inject("tenantId"));
    expect(asOperator.data.length).toBeGreaterThanOrEqual(4);

    const asKey = expectStatus(await admin<List<{ id: string }>>("GET", "/tenants", undefined, a.adminKey), 200);
    expect(asKey).toEqual({ object: "list", data: [expect.objectContaining({ id: a.tenantId, object: "tenant" })], next_cursor: null });
  });

  it("refuses a revoked admin key with 401 and an admin key of a suspended tenant with 403", async () => {
    const a = await sandbox();
    expectStatus(await admin("POST", `/keys/${a.adminKeyId}/revoke`), 200);
    const revoked = await admin<ErrorBody>("GET", "/tenants", undefined, a.adminKey);
    expect(revoked.status).toBe(401);

    const b = await sandbox();
    expectStatus(await admin("POST", `/tenants/${b.tenantId}/suspend`), 200);
    const suspended = await admin<ErrorBody>("GET", "/tenants", undefined, b.adminKey);
    expect(suspended.status).toBe(403);
    expect(suspended.body.error.code).toBe("tenant_suspended");
  });

  it("keeps tenant-level decisions for the operator: a tenant admin cannot create, suspend or re-plan tenants", async () => {
    const a = await sandbox();
    const create = await admin<ErrorBody>("POST", "/tenants", { name: "sneaky" }, a.adminKey);
    expect(create.status).toBe(403);
    expect(create.body.error.code).toBe("permission_denied");
    expect((await admin<ErrorBody>("POST", `/tenants/${a.tenantId}/suspend`, undefined, a.adminKey)).status).toBe(403);
    expect((await admin<ErrorBody>("PATCH", `/tenants/${a.tenantId}`, { plan: "enterprise" }, a.adminKey)).status).toBe(403);
    expect((await admin<ErrorBody>("DELETE", `/tenants/${a.tenantId}`, undefined, a.adminKey)).status).toBe(403);
    // Renaming its own tenant is fine.
    const renamed = expectStatus(await admin<{ name: string }>("PATCH", `/tenants/${a.tenantId}`, { name: "Renamed" }, a.adminKey), 200);
    expect(renamed.name).toBe("Renamed");
  });

  it("answers unknown admin paths with an OpenAI-shaped 404", async () => {
    const res = await admin<ErrorBody>("GET", "/nope");
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe("not_found");
  });
});
