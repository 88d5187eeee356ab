import { describe, expect, it } from "vitest";
import { auditLogs } from "../../schema/tables/index.ts";
import { admin, expectStatus, sandbox } from "./admin-helpers.ts";
import { getPage, signIn } from "./dashboard-helpers.ts";
import { query } from "./helpers.ts";

/** The actions of the page's rows, in the order shown. */
function actionsShown(html: string): string[] {
  return [...html.matchAll(/title="Only this action">([^<]+)<\/a>/g)].map((m) => m[1] ?? "");
}

function marker(): string {
  return crypto.randomUUID().replaceAll("-", "").slice(0, 12);
}

describe("dashboard audit log", () => {
  it("finds entries by text, action prefix and actor, newest first", async () => {
    const s = await sandbox();
    const name = `Acme ${marker()}`;
    expectStatus(await admin("PATCH", `/tenants/${s.tenantId}`, { name }, s.adminKey), 200);
    const b = await signIn();

    const all = await getPage(b, `/dashboard/audit?tenant_id=${s.tenantId}`);
    expect(all.status).toBe(200);
    expect(all.html).toContain("<h1>Audit log</h1>");
    expect(actionsShown(all.html)).toEqual(["tenant.update", "api_key.create", "api_key.create", "environment.create", "tenant.create"]);

    const byText = await getPage(b, `/dashboard/audit?q=${encodeURIComponent(name.toUpperCase())}&action=&actor=`);
    expect(actionsShown(byText.html)).toEqual(["tenant.update"]);
    expect(byText.html).toContain(s.tenantId);
    // The details, as JSON in a disclosure, and the search kept in the form.
    expect(byText.html).toMatch(/<details><summary>after, before/);
    expect(byText.html).toContain(name);
    expect(byText.html).toContain(`name="q" value="${name.toUpperCase()}"`);
    expect(byText.html).toContain("succeeded");

    const byAction = await getPage(b, `/dashboard/audit?tenant_id=${s.tenantId}&action=api_key.`);
    expect(actionsShown(byAction.html)).toEqual(["api_key.create", "api_key.create"]);
    expect(byAction.html).toContain(s.keyId);
    expect(byAction.html).toContain(s.adminKeyId);

    const byActor = await getPage(b, `/dashboard/audit?actor=${encodeURIComponent(`key:${s.adminKeyId}`)}`);
    expect(actionsShown(byActor.html)).toEqual(["tenant.update"]);

    const none = await getPage(b, `/dashboard/audit?q=${marker()}`);
    expect(none.status).toBe(200);
    expect(none.html).toContain("No entries match this search.");
  });

  it("pages to older entries with the API's cursor", async () => {
    const actor = `test:${marker()}`;
    const start = Date.now() - 3_600_000;
    await query((db) =>
      db.insert(auditLogs).values(
        Array.from({ length: 55 }, (_, i) => ({
          id: `aud_${marker()}${String(i).padStart(3, "0")}`,
          at: new Date(start + i * 1000),
          actor,
          action: `test.step${String(i).padStart(2, "0")}`,
          targetType: "test",
          targetId: `t${i}`,
        })),
      ),
    );
    const b = await signIn();
    const first = await getPage(b, `/dashboard/audit?actor=${encodeURIComponent(actor)}`);
    const shown = actionsShown(first.html);
    expect(shown).toHaveLength(50);
    expect(shown[0]).toBe("test.step54");
    expect(shown[49]).toBe("test.step05");
    const older = /href="([^"]+)" rel="next">Older entries/.exec(first.html)?.[1];
    expect(older).toBeDefined();
    expect(first.html).not.toContain("Newest entries");

    const second = await getPage(b, (older ?? "").replaceAll("&amp;", "&"));
    expect(second.status).toBe(200);
    expect(actionsShown(second.html)).toEqual(["test.step04", "test.step03", "test.step02", "test.step01", "test.step00"]);
    expect(second.html).not.toContain("Older entries");
    expect(second.html).toContain("Newest entries");

    const broken = await getPage(b, `/dashboard/audit?cursor=not-a-cursor`);
    expect(broken.status).toBe(400);
    expect(broken.html).toContain("Invalid cursor");
  });

  it("shows a tenant admin only its own tenant's entries, whatever it searches for", async () => {
    const mine = await sandbox();
    const other = await sandbox();
    const secret = `Secret ${marker()}`;
    expectStatus(await admin("PATCH", `/tenants/${other.tenantId}`, { name: secret }), 200);
    const b = await signIn(mine.adminKey);

    const page = await getPage(b, "/dashboard/audit");
    expect(page.status).toBe(200);
    expect(page.html).toContain(mine.tenantId);
    expect(page.html).not.toContain(other.tenantId);
    // No tenant filter for a tenant: it is always its own.
    expect(page.html).not.toContain('name="tenant_id"');

    const searched = await getPage(b, `/dashboard/audit?q=${encodeURIComponent(secret)}`);
    expect(searched.html).toContain("No entries match this search.");
    expect(actionsShown(searched.html)).toEqual([]);
    const scoped = await getPage(b, `/dashboard/audit?tenant_id=${other.tenantId}`);
    expect(scoped.status).toBe(200);
    expect(scoped.html).not.toContain(other.tenantId);
    expect(scoped.html).toContain(mine.tenantId);
    const byTarget = await getPage(b, `/dashboard/audit?target_id=${other.keyId}`);
    expect(byTarget.html).toContain("No entries match this search.");
  });
});
