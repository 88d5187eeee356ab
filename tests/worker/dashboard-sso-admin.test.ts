import { env } from "cloudflare:workers";
import { Client } from "pg";
import { describe, expect, it } from "vitest";
import { admin, expectStatus, sandbox, type ErrorBody } from "./admin-helpers.ts";
import { getPage, postForm, signIn } from "./dashboard-helpers.ts";
import type { SsoJson } from "../../worker/src/dashboard/sso-admin.ts";

const config = { issuer: "https://login.example.com/", client_id: "dash-client", client_secret: "s3cret-value-123", allowed_domains: ["Example.com"], domain_role: "viewer" };

async function storedSecret(tenantId: string): Promise<string | null> {
  const client = new Client({ connectionString: env.DATABASE_URL });
  client.on("error", () => {});
  await client.connect();
  try {
    const res = await client.query<{ client_secret_enc: string | null }>("select client_secret_enc from sso_configs where tenant_id = $1", [tenantId]);
    return res.rows[0]?.client_secret_enc ?? null;
  } finally {
    await client.end();
  }
}

describe("single sign-on settings (/admin/sso)", () => {
  it("stores the client secret encrypted and never shows it", async () => {
    const s = await sandbox();
    const saved = expectStatus(await admin<SsoJson>("PUT", `/sso/${s.tenantId}`, config), 200);
    expect(saved.config).toMatchObject({ issuer: "https://login.example.com", client_id: "dash-client", has_client_secret: true, allowed_domains: ["example.com"], domain_role: "viewer" });
    expect(JSON.stringify(saved)).not.toContain("s3cret-value-123");
    expect(saved.redirect_uri).toBe("http://gateway.test/dashboard/login/sso/callback");
    const sealed = await storedSecret(s.tenantId);
    expect(sealed).toMatch(/^v1\./);
    expect(sealed).not.toContain("s3cret");
    // Saving again without a secret keeps it; null makes the client public.
    const kept = expectStatus(await admin<SsoJson>("PUT", `/sso/${s.tenantId}`, { ...config, client_secret: undefined }), 200);
    expect(kept.config?.has_client_secret).toBe(true);
    expect(await storedSecret(s.tenantId)).toBe(sealed);
    const pub = expectStatus(await admin<SsoJson>("PUT", `/sso/${s.tenantId}`, { ...config, client_secret: null }), 200);
    expect(pub.config?.has_client_secret).toBe(false);
  });

  it("refuses an issuer that is not https (http only on loopback) and bad domains with a 400 naming the field", async () => {
    const s = await sandbox();
    const http = await admin<ErrorBody>("PUT", `/sso/${s.tenantId}`, { ...config, issuer: "http://login.example.com" });
    expect(http.status).toBe(400);
    expect(http.body.error.param).toBe("issuer");
    expectStatus(await admin("PUT", `/sso/${s.tenantId}`, { ...config, issuer: "http://127.0.0.1:9000" }), 200);
    const domain = await admin<ErrorBody>("PUT", `/sso/${s.tenantId}`, { ...config, allowed_domains: ["not a domain"] });
    expect(domain.status).toBe(400);
    expect(domain.body.error.param).toBe("allowed_domains.0");
  });

  it("lets a tenant admin manage its own tenant's SSO and invitations, and not another's", async () => {
    const mine = await sandbox();
    const other = await sandbox();
    expectStatus(await admin("PUT", `/sso/${mine.tenantId}`, config, mine.adminKey), 200);
    const invited = expectStatus(await admin("POST", `/sso/${mine.tenantId}/invitations`, { email: "Alice@Example.com", role: "admin" }, mine.adminKey), 201);
    expect(invited).toMatchObject({ email: "alice@example.com", role: "admin", invited_by: `key:${mine.adminKeyId}` });
    expect((await admin("GET", `/sso/${other.tenantId}`, undefined, mine.adminKey)).status).toBe(404);
    expect((await admin("PUT", `/sso/${other.tenantId}`, config, mine.adminKey)).status).toBe(404);
    expect((await admin("POST", `/sso/${other.tenantId}/invitations`, { email: "x@example.com", role: "admin" }, mine.adminKey)).status).toBe(404);
    const audit = expectStatus(await admin<{ data: { action: string }[] }>("GET", `/audit?target_id=alice@example.com`), 200);
    expect(audit.data.map((a) => a.action)).toContain("sso.invite");
    expectStatus(await admin("DELETE", `/sso/${mine.tenantId}/invitations/alice%40example.com`, undefined, mine.adminKey), 200);
    expect(expectStatus(await admin<SsoJson>("GET", `/sso/${mine.tenantId}`), 200).invitations).toEqual([]);
  });

  it("shows and saves the settings on the dashboard page, and a tenant admin sees only its tenant", async () => {
    const s = await sandbox();
    const other = await sandbox();
    const b = await signIn(s.adminKey);
    const page = await getPage(b, "/dashboard/sso");
    expect(page.status).toBe(200);
    expect(page.html).toContain("Single sign-on is not configured");
    expect(page.html).toContain("http://gateway.test/dashboard/login/sso/callback");
    const saved = await postForm(b, "/dashboard/sso/config", { tenant_id: s.tenantId, issuer: "https://idp.example.org", client_id: "c1", client_secret: "abc123secret", allowed_domains: "example.org", domain_role: "viewer" });
    expect(saved.status).toBe(303);
    const after = await getPage(b, "/dashboard/sso");
    expect(after.html).toContain("Single sign-on saved.");
    expect(after.html).toContain("https://idp.example.org");
    expect(after.html).not.toContain("abc123secret");
    // Another tenant's id in the form is refused by the admin API (404), and nothing is saved there.
    await postForm(b, "/dashboard/sso/config", { tenant_id: other.tenantId, issuer: "https://evil.example.org", client_id: "c1" });
    expect((await getPage(b, "/dashboard/sso")).html).toContain(`No tenant with id ${other.tenantId}`);
    expect(expectStatus(await admin<SsoJson>("GET", `/sso/${other.tenantId}`), 200).config).toBeNull();
  });

  it("refuses a change posted without the CSRF token or from another origin", async () => {
    const s = await sandbox();
    const b = await signIn(s.adminKey);
    const forged = await postForm(b, "/dashboard/sso/invite", { _csrf: null, tenant_id: s.tenantId, email: "mallory@example.com", role: "admin" });
    expect(forged.status).toBe(403);
    expect(forged.html).toContain("CSRF token");
    const crossSite = await postForm(b, "/dashboard/sso/invite", { tenant_id: s.tenantId, email: "mallory@example.com", role: "admin" }, { origin: "https://evil.example" });
    expect(crossSite.status).toBe(403);
    expect(expectStatus(await admin<SsoJson>("GET", `/sso/${s.tenantId}`), 200).invitations).toEqual([]);
  });
});
