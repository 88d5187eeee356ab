import { describe, expect, it } from "vitest";
import type { AuditJson } from "../../worker/src/admin/wire.ts";
import { admin, expectStatus, sandbox, type ErrorBody, type List } from "./admin-helpers.ts";

async function search(query: Record<string, string>, token?: string): Promise<AuditJson[]> {
  return expectStatus(await admin<List<AuditJson>>("GET", `/audit?${new URLSearchParams({ limit: "200", ...query }).toString()}`, undefined, token), 200).data;
}

describe("GET /admin/audit search", () => {
  it("filters by exact action, action prefix and actor, newest first", async () => {
    const s = await sandbox();
    expectStatus(await admin("PATCH", `/tenants/${s.tenantId}`, { name: "renamed by its admin" }, s.adminKey), 200);
    expectStatus(await admin("POST", `/keys/${s.keyId}/revoke`), 200);

    const created = await search({ tenant_id: s.tenantId, action: "api_key.create" });
    expect(created.map((a) => a.target_id).sort()).toEqual([s.keyId, s.adminKeyId].sort());
    for (const prefix of ["api_key.", "api_key*"]) {
      const keyChanges = await search({ tenant_id: s.tenantId, action: prefix });
      expect(keyChanges.map((a) => a.action)).toEqual(["api_key.revoke", "api_key.create", "api_key.create"]);
    }
    // Without the dot or star it is an exact action, and no action is called just "api_key".
    expect(await search({ tenant_id: s.tenantId, action: "api_key" })).toEqual([]);

    const byKey = await search({ tenant_id: s.tenantId, actor: `key:${s.adminKeyId}` });
    expect(byKey.map((a) => a.action)).toEqual(["tenant.update"]);
    const byOperator = await search({ tenant_id: s.tenantId, actor: "admin-token" });
    expect(byOperator.map((a) => a.action)).toEqual(["api_key.revoke", "api_key.create", "api_key.create", "environment.create", "tenant.create"]);
    const times = byOperator.map((a) => Date.parse(a.at));
    expect(times).toEqual([...times].sort((a, b) => b - a));
  });

  it("finds text anywhere in the action, actor, target id or details, ignoring case, and takes wildcards literally", async () => {
    const s = await sandbox();
    const marker = crypto.randomUUID().replaceAll("-", "").slice(0, 12);
    expectStatus(await admin("PATCH", `/tenants/${s.tenantId}`, { name: `Acme ${marker}` }), 200);

    const inDetails = await search({ q: marker.toUpperCase() });
    expect(inDetails.map((a) => [a.action, a.target_id])).toEqual([["tenant.update", s.tenantId]]);
    expect(inDetails[0]?.details).toMatchObject({ after: { name: `Acme ${marker}` } });

    const byTarget = await search({ q: s.keyId });
    expect(byTarget.map((a) => a.action)).toEqual(["api_key.create"]);
    const byActor = await search({ tenant_id: s.tenantId, q: "ADMIN-TOK" });
    expect(byActor.length).toBe(5);
    const byAction = await search({ tenant_id: s.tenantId, q: "ENVIRONMENT.CR" });
    expect(byAction.map((a) => a.target_id)).toEqual([s.environmentId]);

    // '%' and '_' are searched for, not used as wildcards.
    expect(await search({ q: `${marker.slice(0, 4)}%${marker.slice(5)}` })).toEqual([]);
    expect(await search({ q: `${marker.slice(0, 4)}_${marker.slice(5)}` })).toEqual([]);
    // Combined with other filters.
    expect(await search({ q: marker, action: "tenant.create" })).toEqual([]);
  });

  it("never shows a tenant admin another tenant's entries, whatever it searches for", async () => {
    const a = await sandbox();
    const b = await sandbox();
    const marker = crypto.randomUUID().replaceAll("-", "").slice(0, 12);
    expectStatus(await admin("PATCH", `/tenants/${a.tenantId}`, { name: `Secret ${marker}` }), 200);

    expect(await search({ q: marker }, b.adminKey)).toEqual([]);
    expect(await search({ q: a.tenantId }, b.adminKey)).toEqual([]);
    expect(await search({ target_id: a.keyId }, b.adminKey)).toEqual([]);
    const bKeys = await search({ action: "api_key.", actor: "admin-token" }, b.adminKey);
    expect(bKeys.length).toBe(2);
    expect(bKeys.every((e) => e.tenant_id === b.tenantId)).toBe(true);
    const everything = await search({ q: "." }, b.adminKey);
    expect(everything.length).toBeGreaterThan(0);
    expect(everything.every((e) => e.tenant_id === b.tenantId)).toBe(true);
    const other = await admin<ErrorBody>("GET", `/audit?tenant_id=${a.tenantId}&q=${marker}`, undefined, b.adminKey);
    expect(other.status).toBe(404);

    // Its own entry is found.
    expect((await search({ q: marker }, a.adminKey)).map((e) => e.target_id)).toEqual([a.tenantId]);
  });

  it("refuses an overlong search with 400 naming the parameter", async () => {
    const res = await admin<ErrorBody>("GET", `/audit?q=${"x".repeat(201)}`);
    expect(res.status).toBe(400);
    expect(res.body.error.param).toBe("q");
  });
});
