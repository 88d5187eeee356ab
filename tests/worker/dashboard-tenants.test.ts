import { and, eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { dashboardSessions } from "../../schema/tables/index.ts";
import type { CountersJson, LimitsJson, TenantJson } from "../../worker/src/admin/wire.ts";
import { admin, expectStatus, modelsStatusBecomes, sandbox, unique, type KeyJson, type List } from "./admin-helpers.ts";
import { getPage, postForm, signIn, type Browser } from "./dashboard-helpers.ts";
import { post, query } from "./helpers.ts";

// Tenants → environments → keys (/dashboard/tenants): everything through the real forms, checked
// against what the admin API and the gateway then do.

const T = "/dashboard/tenants";

/** The key a create or rotate answer shows once (its read-only input). */
function shownKey(html: string): string {
  const key = /<input id="new-api-key"[^>]*value="([^"]+)"/.exec(html)?.[1];
  if (!key) throw new Error(`no key on the page: ${html.slice(0, 500)}`);
  return key;
}

/** Loads a page and expects 200. */
async function page(b: Browser, path: string): Promise<string> {
  const res = await getPage(b, path);
  expect(res.status, res.html.slice(0, 500)).toBe(200);
  return res.html;
}

/** Posts a form, expects a 303 and returns the page it leads to (with its flash message). */
async function submit(b: Browser, path: string, fields: Record<string, string>): Promise<{ location: string; html: string }> {
  const res = await postForm(b, path, fields);
  expect(res.status, res.html.slice(0, 500)).toBe(303);
  const location = res.location ?? "";
  return { location, html: await page(b, location) };
}

describe("tenants, environments and keys through the dashboard", () => {
  it("lets the operator create a tenant, an environment and a key, showing the key once with a copy button", async () => {
    const b = await signIn();
    const name = unique("dash-tenant");
    const tenant = await submit(b, T, { name, plan: "team" });
    expect(tenant.location).toMatch(/^\/dashboard\/tenants\/[^/]+$/);
    expect(tenant.html).toContain(`Tenant ${name} created.`);
    expect(tenant.html).toContain("<h1>Tenant " + name + "</h1>");
    expect(tenant.html).toContain("team");
    expect(tenant.html).toContain('aria-label="Breadcrumb"');
    const tenantId = tenant.location.split("/").pop() ?? "";
    expect(expectStatus(await admin<TenantJson>("GET", `/tenants/${tenantId}`), 200)).toMatchObject({ name, plan: "team", status: "active" });
    expect(await page(b, T)).toContain(name);
    const renamed = await submit(b, tenant.location, { name: `${name}-b`, plan: "enterprise" });
    expect(renamed.html).toContain(`Tenant ${name}-b saved.`);
    expect(expectStatus(await admin<TenantJson>("GET", `/tenants/${tenantId}`), 200)).toMatchObject({ name: `${name}-b`, plan: "enterprise" });

    const env = await submit(b, `${T}/${tenantId}/environments`, { name: "prod" });
    expect(env.location).toMatch(new RegExp(`^/dashboard/tenants/${tenantId}/environments/[^/]+$`));
    expect(env.html).toContain("Environment prod created.");
    expect(env.html).toContain("No keys in this environment yet.");

    const created = await postForm(b, `${env.location}/keys`, { name: "backend", scope_chat: "on", scope_embeddings: "on", expires_days: "30" });
    // The key is the POST's own answer: no redirect (nothing in a URL), no cookie, never cached.
    expect(created.status).toBe(200);
    expect(created.location).toBeNull();
    expect(created.headers.get("cache-control")).toBe("no-store");
    const key = shownKey(created.html);
    expect(created.headers.getSetCookie().join("\n")).not.toContain(key);
    expect(created.html).toContain('data-copy="new-api-key"');
    expect(created.html).toContain("it will not be shown again");
    await modelsStatusBecomes(key, 200);

    const keys = expectStatus(await admin<List<KeyJson>>("GET", `/keys?environment_id=${env.location.split("/").pop() ?? ""}`), 200);
    expect(keys.data).toHaveLength(1);
    expect(keys.data[0]).toMatchObject({ name: "backend", scopes: ["chat", "embeddings"], status: "active" });
    expect(keys.data[0]?.expires_at).not.toBeNull();

    // Later pages show the key's prefix, never the key.
    const envPage = await page(b, env.location);
    expect(envPage).toContain("backend");
    expect(envPage).toContain(keys.data[0]?.prefix ?? "missing");
    expect(envPage).not.toContain(key);
    const keyPage = await page(b, `${T}/${tenantId}/keys/${keys.data[0]?.id ?? ""}`);
    expect(keyPage).toContain("<h1>Key backend</h1>");
    expect(keyPage).not.toContain(key);
  });

  it("refuses a key without scopes with a message, and creates nothing", async () => {
    const s = await sandbox();
    const b = await signIn();
    const res = await submit(b, `${T}/${s.tenantId}/environments/${s.environmentId}/keys`, { name: "none" });
    expect(res.html).toContain("Choose at least one scope for the key.");
    const keys = expectStatus(await admin<List<KeyJson>>("GET", `/keys?environment_id=${s.environmentId}`), 200);
    expect(keys.data.map((k) => k.name).sort()).toEqual(["app", "ops"]);
  });

  it("rotates a key: the new key is shown once and works, the old one is refused within seconds", async () => {
    const s = await sandbox();
    const b = await signIn();
    await modelsStatusBecomes(s.key, 200);
    const rotated = await postForm(b, `${T}/${s.tenantId}/keys/${s.keyId}/rotate`, { overlap_seconds: "0" });
    expect(rotated.status).toBe(200);
    expect(rotated.headers.get("cache-control")).toBe("no-store");
    expect(rotated.html).toContain("Key rotated");
    expect(rotated.html).toContain(`href="${T}/${s.tenantId}/keys/${s.keyId}"`);
    const fresh = shownKey(rotated.html);
    expect(fresh).not.toBe(s.key);
    await modelsStatusBecomes(fresh, 200);
    await modelsStatusBecomes(s.key, 401);
    const oldPage = await page(b, `${T}/${s.tenantId}/keys/${s.keyId}`);
    expect(oldPage).toContain(">expired<");
    expect(oldPage).not.toContain("Rotate key");
    expect(await page(b, `${T}/${s.tenantId}/environments/${s.environmentId}`)).not.toContain(fresh);
  });

  it("revokes a key after which the gateway refuses it", async () => {
    const s = await sandbox();
    const b = await signIn();
    const keyPage = await page(b, `${T}/${s.tenantId}/keys/${s.keyId}`);
    expect(keyPage).toContain('data-confirm="Revoke app?');
    const res = await submit(b, `${T}/${s.tenantId}/keys/${s.keyId}/revoke`, {});
    expect(res.location).toBe(`${T}/${s.tenantId}/keys/${s.keyId}`);
    expect(res.html).toContain("Key app revoked");
    expect(res.html).toContain(">revoked<");
    await modelsStatusBecomes(s.key, 401);
  });

  it("suspends a tenant (its keys refused) and resumes it, from the list", async () => {
    const s = await sandbox();
    const b = await signIn();
    const list = await page(b, T);
    expect(list).toContain(`${T}/${s.tenantId}/suspend`);
    const suspended = await submit(b, `${T}/${s.tenantId}/suspend`, { back: T });
    expect(suspended.location).toBe(T);
    expect(suspended.html).toContain("suspended: its keys are refused");
    expect(expectStatus(await admin<TenantJson>("GET", `/tenants/${s.tenantId}`), 200).status).toBe("suspended");
    await modelsStatusBecomes(s.key, 403);
    const tenantPage = await page(b, `${T}/${s.tenantId}`);
    expect(tenantPage).toContain(">suspended<");
    expect(tenantPage).toContain(`${T}/${s.tenantId}/resume`);

    const resumed = await submit(b, `${T}/${s.tenantId}/resume`, { back: "https://evil.example/" });
    expect(resumed.location).toBe(`${T}/${s.tenantId}`);
    expect(resumed.html).toContain("resumed");
    expect(expectStatus(await admin<TenantJson>("GET", `/tenants/${s.tenantId}`), 200).status).toBe("active");
    await modelsStatusBecomes(s.key, 200);
  });

  it("edits limits of a tenant, an environment and a key, and resets them", async () => {
    const s = await sandbox();
    const b = await signIn();
    const keyPath = `${T}/${s.tenantId}/keys/${s.keyId}`;
    const saved = await submit(b, `${T}/${s.tenantId}/settings/key/${s.keyId}/limits`, { rpm: "7", tpm: "", concurrency: "3" });
    expect(saved.location).toBe(keyPath);
    expect(saved.html).toContain("Limits saved.");
    expect(saved.html).toMatch(/name="rpm"[^>]*value="7"/);
    expect(expectStatus(await admin<LimitsJson>("GET", `/limits/key/${s.keyId}`), 200)).toMatchObject({ override: { rpm: 7, tpm: null, concurrency: 3 }, effective: { rpm: 7, concurrency: 3 } });

    const bad = await submit(b, `${T}/${s.tenantId}/settings/key/${s.keyId}/limits`, { rpm: "-1", tpm: "", concurrency: "" });
    expect(bad.html).toContain("Requests per minute must be a whole number");
    expect(expectStatus(await admin<LimitsJson>("GET", `/limits/key/${s.keyId}`), 200).override?.rpm).toBe(7);

    const envPath = `${T}/${s.tenantId}/environments/${s.environmentId}`;
    const envPage = await page(b, envPath);
    // Concurrency caps do not apply to environments: no such field there.
    expect(envPage).not.toContain('name="concurrency"');
    await submit(b, `${T}/${s.tenantId}/settings/environment/${s.environmentId}/limits`, { rpm: "50", tpm: "9000" });
    expect(expectStatus(await admin<LimitsJson>("GET", `/limits/environment/${s.environmentId}`), 200).override).toEqual({ rpm: 50, tpm: 9000, concurrency: null });

    await submit(b, `${T}/${s.tenantId}/settings/tenant/${s.tenantId}/limits`, { rpm: "120", tpm: "", concurrency: "" });
    expect(await page(b, `${T}/${s.tenantId}`)).toMatch(/name="rpm"[^>]*value="120"/);

    const reset = await submit(b, `${T}/${s.tenantId}/settings/key/${s.keyId}/limits/reset`, {});
    expect(reset.html).toContain("Limits reset to the defaults.");
    expect(expectStatus(await admin<LimitsJson>("GET", `/limits/key/${s.keyId}`), 200).override).toBeNull();
  });

  it("adds, changes and deletes budgets, and shows their counters with a meter after traffic", async () => {
    const s = await sandbox();
    const b = await signIn();
    const keyPath = `${T}/${s.tenantId}/keys/${s.keyId}`;
    const budgets = `${T}/${s.tenantId}/settings/key/${s.keyId}/budgets`;
    const added = await submit(b, budgets, { kind: "requests", period: "day", amount: "1000" });
    expect(added.html).toContain("Budget added.");
    expect(added.html).toContain("Requests per day");
    const spend = await submit(b, budgets, { kind: "spend", period: "month", amount: "12.50" });
    expect(spend.html).toContain("$12.50");
    const dup = await submit(b, budgets, { kind: "requests", period: "day", amount: "5" });
    expect(dup.html).toContain("already has a requests budget per day");

    const messages = [{ role: "user", content: "count to three" }];
    for (let i = 0; i < 2; i++) {
      const res = await post("/v1/chat/completions", { model: "sim-llama-8b", messages, max_tokens: 2 }, s.key);
      expect(res.status, await res.clone().text()).toBe(200);
      await res.arrayBuffer();
    }
    const counters = expectStatus(await admin<CountersJson>("GET", `/counters/key/${s.keyId}`), 200);
    const requests = counters.budgets.find((x) => x.budget.kind === "requests");
    expect(requests?.free).toBeLessThan(1000);

    const html = await page(b, keyPath);
    expect(html).toContain("1,000 requests");
    expect(html).toMatch(/role="img" aria-label="\d+% of the cap used"/);
    expect(html).toContain("Requests per minute");
    expect(html).not.toContain("Live counters are unavailable");

    const spendId = counters.budgets.find((x) => x.budget.kind === "spend")?.budget.id ?? "";
    const changed = await submit(b, `${budgets}/${spendId}`, { amount: "20" });
    expect(changed.html).toContain("Budget changed.");
    expect(changed.html).toContain("$20.00");
    const deleted = await submit(b, `${budgets}/${spendId}/delete`, {});
    expect(deleted.html).toContain("Budget deleted.");
    expect(expectStatus(await admin<List<{ id: string }>>("GET", `/budgets?scope=key&scope_id=${s.keyId}`), 200).data.map((x) => x.id)).not.toContain(spendId);
  });
});

describe("what a tenant admin sees", () => {
  it("goes to its own tenant, sees no operator actions, and gets 404 for another tenant's pages", async () => {
    const mine = await sandbox();
    const other = await sandbox();
    const b = await signIn(mine.adminKey);
    const list = await getPage(b, T);
    expect(list.status).toBe(303);
    expect(list.headers.get("location")).toBe(`${T}/${mine.tenantId}`);

    const own = await page(b, `${T}/${mine.tenantId}`);
    expect(own).not.toContain("/suspend");
    // The tenant's own limits and budgets are the operator's: shown, not editable.
    expect(own).toContain("Requests per minute");
    expect(own).not.toContain("Save limits");
    expect(own).not.toContain("Add budget");
    expect(own).toContain("Create environment");
    expect(own).not.toContain(">Tenants</a>");
    expect(await page(b, `${T}/${mine.tenantId}/environments/${mine.environmentId}`)).toContain("Save limits");

    for (const path of [
      `${T}/${other.tenantId}`,
      `${T}/${other.tenantId}/environments/${other.environmentId}`,
      `${T}/${other.tenantId}/keys/${other.keyId}`,
      // Another tenant's environment or key under this tenant's path.
      `${T}/${mine.tenantId}/environments/${other.environmentId}`,
      `${T}/${mine.tenantId}/keys/${other.keyId}`,
    ]) {
      const res = await getPage(b, path);
      expect(res.status, path).toBe(404);
      expect(res.html).not.toContain("Save limits");
    }

    // It may rename its tenant, not change its plan (no such field; a forged one is refused).
    expect(own).toContain("Save tenant");
    expect(own).not.toContain('name="plan"');
    const planned = await submit(b, `${T}/${mine.tenantId}`, { name: "renamed", plan: "enterprise" });
    expect(planned.html).toMatch(/Only the operator/);
    await submit(b, `${T}/${mine.tenantId}`, { name: "renamed" });
    expect(expectStatus(await admin<TenantJson>("GET", `/tenants/${mine.tenantId}`), 200)).toMatchObject({ name: "renamed", plan: "free" });

    const suspend = await submit(b, `${T}/${mine.tenantId}/suspend`, {});
    expect(suspend.html).toMatch(/operator/i);
    expect(expectStatus(await admin<TenantJson>("GET", `/tenants/${mine.tenantId}`), 200).status).toBe("active");

    const revokeOther = await postForm(b, `${T}/${other.tenantId}/keys/${other.keyId}/revoke`, {});
    expect(revokeOther.status).toBe(303);
    expect((await getPage(b, revokeOther.location ?? "")).status).toBe(404);
    expect(expectStatus(await admin<KeyJson>("GET", `/keys/${other.keyId}`), 200).status).toBe("active");
    const limitsOther = await postForm(b, `${T}/${other.tenantId}/settings/key/${other.keyId}/limits`, { rpm: "1" });
    expect(limitsOther.status).toBe(303);
    expect(expectStatus(await admin<LimitsJson>("GET", `/limits/key/${other.keyId}`), 200).override).toBeNull();
    const tenantLimits = await postForm(b, `${T}/${mine.tenantId}/settings/tenant/${mine.tenantId}/limits`, { rpm: "1" });
    expect(tenantLimits.status).toBe(303);
    expect(expectStatus(await admin<LimitsJson>("GET", `/limits/tenant/${mine.tenantId}`), 200).override).toBeNull();

    // It may create keys in its own environments.
    const created = await postForm(b, `${T}/${mine.tenantId}/environments/${mine.environmentId}/keys`, { name: "worker", scope_chat: "on" });
    expect(created.status).toBe(200);
    await modelsStatusBecomes(shownKey(created.html), 200);
  });

  it("shows a viewer everything but no forms", async () => {
    const s = await sandbox();
    const b = await signIn(s.adminKey);
    await query((db) =>
      db
        .update(dashboardSessions)
        .set({ role: "viewer" })
        .where(and(eq(dashboardSessions.tenantId, s.tenantId), eq(dashboardSessions.principal, `key:${s.adminKeyId}`))),
    );
    for (const path of [`${T}/${s.tenantId}`, `${T}/${s.tenantId}/environments/${s.environmentId}`, `${T}/${s.tenantId}/keys/${s.keyId}`]) {
      const html = await page(b, path);
      expect(html).toContain("Requests per minute");
      expect(html).not.toMatch(/<form method="post" action="\/dashboard\/tenants/);
    }
    const refused = await submit(b, `${T}/${s.tenantId}/keys/${s.keyId}/revoke`, {});
    expect(refused.html).toContain("viewer");
    expect(expectStatus(await admin<KeyJson>("GET", `/keys/${s.keyId}`), 200).status).toBe("active");
  });
});
