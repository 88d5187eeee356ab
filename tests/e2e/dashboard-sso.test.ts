/**
 * The dashboard's single sign-on in a real browser (headless Chromium) against a real OpenID Connect
 * provider on loopback: invited users get their role, others are refused, and a tenant's user sees
 * only its tenant. Screenshots under tests/artifacts/dashboard-sso/.
 */
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adminJson, newTenantKey } from "../support/e2e-calls.ts";
import { startTestStack, type TestStack } from "../support/e2e-stack.ts";
import { artifactsDir, browserMissing, launchBrowser, screenshot } from "../support/browser.ts";
import { startOidcProvider, type OidcProvider } from "../support/oidc-provider.ts";

const missing = browserMissing();
if (missing) console.warn(`dashboard browser tests skipped: ${missing}`);

describe.skipIf(missing !== null)("dashboard single sign-on (browser)", () => {
  let t: TestStack;
  let oidc: OidcProvider;
  let browser: Browser;
  let gw: string;
  const shots = artifactsDir("dashboard-sso");

  beforeAll(async () => {
    t = await startTestStack("dash-sso");
    gw = t.stack.gatewayUrl;
    oidc = await startOidcProvider(`${gw}/dashboard/login/sso/callback`);
    browser = await launchBrowser();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await oidc?.close();
    await t?.close();
  });

  /** Signs in through the sign-in page's SSO form and the provider's own login and consent pages. */
  async function ssoSignIn(page: Page, email: string, shotPrefix?: string): Promise<void> {
    await page.goto(`${gw}/dashboard/login`);
    await page.getByLabel("Work email").fill(email);
    await page.getByRole("button", { name: "Continue with single sign-on" }).click();
    await page.waitForURL(`${oidc.issuer}/**`);
    if (shotPrefix) await screenshot(page, shots, `${shotPrefix}-provider-login`);
    await page.locator("input[name=login]").fill(email);
    await page.locator("input[name=password]").fill("any");
    await page.getByRole("button", { name: "Sign-in" }).click();
    await page.getByRole("button", { name: "Continue" }).click();
  }

  it("admits an invited user with their role, refuses others, and shows a tenant's user only its tenant", async () => {
    const acme = await newTenantKey(t.stack, "acme");
    const other = await newTenantKey(t.stack, "globex");
    await adminJson(t.stack, "PUT", `/sso/${acme.tenantId}`, { issuer: oidc.issuer, client_id: oidc.clientId, client_secret: oidc.clientSecret, allowed_domains: ["acme.test"], domain_role: "viewer" });
    await adminJson(t.stack, "POST", `/sso/${acme.tenantId}/invitations`, { email: "alice@partner.test", role: "admin" });

    // An invited address from another domain signs in as an admin of acme.
    const alice = await browser.newPage();
    await ssoSignIn(alice, "alice@partner.test", "alice");
    await alice.waitForURL(`${gw}/dashboard`);
    await expect.poll(() => alice.locator("header .who").textContent()).toContain("alice@partner.test (admin)");
    await screenshot(alice, shots, "alice-overview");
    // Fleet is the operator's: not in the navigation, and refused by URL.
    expect(await alice.getByRole("link", { name: "Fleet" }).count()).toBe(0);
    const fleet = await alice.goto(`${gw}/dashboard/fleet`);
    expect(fleet?.status()).toBe(403);
    // Another tenant's pages do not exist for her.
    const foreign = await alice.goto(`${gw}/dashboard/tenants/${other.tenantId}`);
    expect(foreign?.status()).toBe(404);
    await screenshot(alice, shots, "alice-foreign-tenant-404");
    // Her SSO page shows her tenant's settings and lets her (an admin) change them.
    await alice.goto(`${gw}/dashboard/sso`);
    await expect.poll(() => alice.locator("main").textContent()).toContain(oidc.issuer);
    expect(await alice.getByRole("button", { name: "Invite" }).count()).toBe(1);
    await screenshot(alice, shots, "alice-sso-settings");
    // The audit log shows her sign-in, and nothing of the other tenant.
    await alice.goto(`${gw}/dashboard/audit`);
    const auditText = (await alice.locator("main").textContent()) ?? "";
    expect(auditText).toContain("dashboard.sign_in");
    expect(auditText).not.toContain(other.tenantId);

    // A user of the admitted domain gets the domain's role: viewer, with no change forms.
    const bob = await (await browser.newContext()).newPage();
    await ssoSignIn(bob, "bob@acme.test");
    await bob.waitForURL(`${gw}/dashboard`);
    await expect.poll(() => bob.locator("header .who").textContent()).toContain("bob@acme.test (viewer)");
    await bob.goto(`${gw}/dashboard/sso`);
    expect(await bob.getByRole("button", { name: "Invite" }).count()).toBe(0);
    await screenshot(bob, shots, "bob-viewer-sso");

    // Neither invited nor of the domain: refused, and told what to do.
    const eve = await (await browser.newContext()).newPage();
    await eve.goto(`${gw}/dashboard/login`);
    await eve.getByLabel("Work email").fill("eve@elsewhere.test");
    await eve.getByRole("button", { name: "Continue with single sign-on" }).click();
    await expect.poll(() => eve.locator("main").textContent()).toContain("No organisation lets this address sign in");
    await screenshot(eve, shots, "eve-refused");

    // Withdrawing alice's invitation ends her session at once.
    await adminJson(t.stack, "DELETE", `/sso/${acme.tenantId}/invitations/alice%40partner.test`);
    await alice.goto(`${gw}/dashboard`);
    await alice.waitForURL(/\/dashboard\/login/);
    await screenshot(alice, shots, "alice-signed-out-after-withdrawal");
  }, 120_000);

  it("refuses an address the provider has not verified", async () => {
    const initech = await newTenantKey(t.stack, "initech");
    await adminJson(t.stack, "PUT", `/sso/${initech.tenantId}`, { issuer: oidc.issuer, client_id: oidc.clientId, client_secret: oidc.clientSecret, allowed_domains: [], domain_role: "viewer" });
    await adminJson(t.stack, "POST", `/sso/${initech.tenantId}/invitations`, { email: "unverified@initech.test", role: "admin" });
    const page = await (await browser.newContext()).newPage();
    await ssoSignIn(page, "unverified@initech.test");
    await expect.poll(() => page.locator("main").textContent()).toContain("did not vouch for your email address");
    expect(page.url()).toContain("/dashboard/login/sso/callback");
    const audit = await adminJson<{ data: { action: string; success: boolean; details: Record<string, unknown> }[] }>(t.stack, "GET", `/audit?tenant_id=${initech.tenantId}`);
    expect(audit.data.find((a) => a.action === "dashboard.sign_in" && !a.success)?.details).toMatchObject({ method: "sso", reason: "email_not_verified" });
  }, 60_000);
});
