import { describe, expect, it } from "vitest";
import type { AuditJson } from "../../worker/src/admin/wire.ts";
import { admin, expectStatus, sandbox, type List } from "./admin-helpers.ts";

type Audit = AuditJson & { details: { before?: Record<string, unknown> | null; after?: Record<string, unknown> | null } & Record<string, unknown> };

describe("audit log", () => {
  it("records every change with its actor and before/after, newest first", async () => {
    const s = await sandbox();
    expectStatus(await admin("PATCH", `/tenants/${s.tenantId}`, { name: "Before" }), 200);
    expectStatus(await admin("PATCH", `/tenants/${s.tenantId}`, { name: "After" }, s.adminKey), 200);
    expectStatus(await admin("POST", `/tenants/${s.tenantId}/suspend`), 200);
    expectStatus(await admin("POST", `/tenants/${s.tenantId}/resume`), 200);

    const log = expectStatus(await admin<List<Audit>>("GET", `/audit?target_id=${s.tenantId}`), 200);
    expect(log.data.map((a) => a.action)).toEqual(["tenant.resume", "tenant.suspend", "tenant.update", "tenant.update", "tenant.create"]);
    const [resume, suspend, rename] = log.data;
    expect(rename).toMatchObject({
      object: "audit_log",
      actor: `key:${s.adminKeyId}`,
      target_type: "tenant",
      target_id: s.tenantId,
      tenant_id: s.tenantId,
      details: { before: { name: "Before" }, after: { name: "After" } },
    });
    expect(suspend).toMatchObject({ actor: "admin-token", details: { before: { status: "active" }, after: { status: "suspended" } } });
    expect(resume?.details.after).toMatchObject({ status: "active" });
    const times = log.data.map((a) => Date.parse(a.at));
    expect(times).toEqual([...times].sort((a, b) => b - a));
  });

  it("records limit and key changes against their target, and pages newest first without gaps", async () => {
    const s = await sandbox();
    expectStatus(await admin("PUT", `/limits/key/${s.keyId}`, { rpm: 10 }), 200);
    expectStatus(await admin("PUT", `/limits/key/${s.keyId}`, { rpm: 20 }), 200);
    expectStatus(await admin("DELETE", `/limits/key/${s.keyId}`), 200);
    expectStatus(await admin("POST", `/keys/${s.keyId}/revoke`), 200);

    const limitRows = expectStatus(await admin<List<Audit>>("GET", `/audit?target_id=${s.keyId}`), 200).data;
    expect(limitRows.map((a) => a.action)).toEqual(["api_key.revoke", "limits.clear", "limits.set", "limits.set", "api_key.create"]);
    expect(limitRows[1]?.details).toEqual({ before: { rpm: 20, tpm: null, concurrency: null }, after: null });
    expect(limitRows[2]?.details).toEqual({ before: { rpm: 10, tpm: null, concurrency: null }, after: { rpm: 20, tpm: null, concurrency: null } });
    expect(limitRows[0]?.details.after).toMatchObject({ status: "revoked" });

    // One entry per page, following the cursor: the same entries in the same order.
    const all = expectStatus(await admin<List<Audit>>("GET", `/audit?tenant_id=${s.tenantId}&limit=200`), 200).data.map((a) => a.id);
    const paged: string[] = [];
    let cursor: string | null = null;
    do {
      const page: List<Audit> = expectStatus(await admin<List<Audit>>("GET", `/audit?tenant_id=${s.tenantId}&limit=1${cursor ? `&cursor=${cursor}` : ""}`), 200);
      paged.push(...page.data.map((a) => a.id));
      cursor = page.next_cursor;
    } while (cursor !== null);
    expect(paged).toEqual(all);
    // tenant, environment, two keys, three limit changes, one revocation.
    expect(all).toHaveLength(8);
  });
});
