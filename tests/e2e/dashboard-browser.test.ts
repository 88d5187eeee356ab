/**
 * The dashboard end to end in a real browser (headless Chromium, playwright-core) on the local stack:
 * the operator signs in, creates a tenant, environment and key (shown once), sends traffic with it
 * through the `openai` client, sees usage and counters move after the scheduled flush, revokes the key
 * and sees it refused, drains a node and sees the fleet page change; forged changes are refused.
 * Screenshots of every page go to tests/artifacts/dashboard/.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import OpenAI from "openai";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adminJson } from "../support/e2e-calls.ts";
import { startTestStack, type TestStack } from "../support/e2e-stack.ts";
import { artifactsDir, browserMissing, launchBrowser, screenshot } from "../support/browser.ts";

const missing = browserMissing();
if (missing) console.warn(`dashboard browser tests skipped: ${missing}`);

describe.skipIf(missing !== null)("dashboard (browser)", () => {
  let t: TestStack;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let gw: string;
  const shots = artifactsDir("dashboard");

  beforeAll(async () => {
    t = await startTestStack("dash-browser");
    gw = t.stack.gatewayUrl;
    browser = await launchBrowser();
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: gw });
    page = await context.newPage();
    // Confirmations (revoke, drain) are accepted as a user would.
    page.on("dialog", (d) => void d.accept());
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await t?.close();
  });

  /** The value of an overview card ("Requests", "Tokens", …). */
  async function card(label: string): Promise<string> {
    return ((await page.locator(".card", { has: page.locator(".label", { hasText: new RegExp(`^${label}$`) }) }).locator(".value").textContent()) ?? "").trim();
  }

  it("takes an operator from sign-in through keys, traffic, revocation and draining", async () => {
    // Sign-in: the token form.
    await page.goto(`${gw}/dashboard`);
    await page.waitForURL(/\/dashboard\/login\?next=/);
    await screenshot(page, shots, "01-sign-in");
    await page.getByLabel("Token or key").fill(t.stack.adminToken);
    await page.getByRole("button", { name: "Sign in", exact: true }).click();
    await page.waitForURL(`${gw}/dashboard`);
    await expect.poll(() => page.locator("header .who").textContent()).toContain("Operator");
    await screenshot(page, shots, "02-overview");

    // Tenant → environment → key, through the forms.
    await page.getByRole("link", { name: "Tenants & keys" }).click();
    await page.getByLabel("Name").fill("Acme Browser Co");
    await page.getByRole("button", { name: "Create tenant" }).click();
    await page.getByRole("link", { name: "Acme Browser Co" }).click();
    const tenantUrl = page.url();
    const tenantId = /\/tenants\/([^/?]+)/.exec(tenantUrl)?.[1] ?? "";
    expect(tenantId).toMatch(/^ten_/);
    await page.getByLabel("New environment’s name").fill("production");
    await page.getByRole("button", { name: "Create environment" }).click();
    await screenshot(page, shots, "03-tenant");
    await page.getByRole("link", { name: "production" }).click();
    const envUrl = page.url();
    await page.getByLabel("Name", { exact: true }).fill("backend");
    await page.getByRole("button", { name: "Create key" }).click();
    const keyInput = page.locator("#new-api-key");
    const apiKey = await keyInput.inputValue();
    expect(apiKey).toMatch(/^sk-sy-/);
    await expect.poll(() => page.getByText("it will not be shown again").count()).toBeGreaterThan(0);
    // The copy button (revealed by the script) puts the key on the clipboard.
    await page.getByRole("button", { name: "Copy the key" }).click();
    await expect.poll(() => page.evaluate("navigator.clipboard.readText()")).toBe(apiKey);
    await screenshot(page, shots, "04-key-shown-once");
    // Shown once: the environment page afterwards has its prefix only.
    await page.goto(envUrl);
    const envHtml = await page.content();
    expect(envHtml).toContain(apiKey.slice(0, 12));
    expect(envHtml).not.toContain(apiKey);
    await screenshot(page, shots, "05-environment");

    // A requests budget on the key, so its counter has a cap to move against.
    await page.getByRole("link", { name: "backend" }).first().click();
    const keyUrl = page.url();
    const keyId = /\/keys\/([^/?]+)/.exec(keyUrl)?.[1] ?? "";
    await page.getByLabel("Kind").selectOption("requests");
    await page.getByLabel("Period").selectOption("month");
    await page.getByLabel("Cap (tokens, requests, or dollars for spend)").fill("100");
    await page.getByRole("button", { name: "Add budget" }).click();
    await expect.poll(() => page.locator("main").textContent()).toContain("0%");

    // Before traffic, the tenant's overview is empty.
    await page.goto(`${gw}/dashboard?tenant_id=${tenantId}`);
    expect(await page.locator("main").textContent()).toContain("No usage yet");

    // Traffic with the new key, through the openai client.
    const client = new OpenAI({ apiKey, baseURL: `${gw}/v1`, maxRetries: 0 });
    for (let i = 0; i < 3; i++) {
      const done = await client.chat.completions.create({ model: "sim-llama-8b", messages: [{ role: "user", content: `hello ${i}` }], max_tokens: 8 });
      expect(done.choices[0]?.message.content).toBeTruthy();
    }
    // The scheduled flush moves usage to Postgres; the overview and the key's counters show it.
    await expect
      .poll(
        async () => {
          await t.stack.runScheduled();
          await page.goto(`${gw}/dashboard?tenant_id=${tenantId}`);
          return card("Requests");
        },
        { timeout: 30_000, interval: 1_000 },
      )
      .toBe("3");
    expect(Number((await card("Tokens")).replaceAll(",", ""))).toBeGreaterThan(0);
    // The requests chart's table twin has the 3 requests in one of its hours.
    const chartTable = page.locator("figure.chart", { hasText: "Requests" }).first();
    await chartTable.getByRole("button", { name: "Show table" }).click();
    expect(await chartTable.locator("tbody td.num").allTextContents()).toContain("3");
    await screenshot(page, shots, "06-overview-after-traffic");
    await page.goto(keyUrl);
    await expect.poll(() => page.locator("main").textContent()).toContain("3%");
    await screenshot(page, shots, "07-key-counters");

    // Revoke from the key page: the key is refused within seconds.
    await page.getByRole("button", { name: "Revoke key" }).click();
    await expect.poll(() => page.locator("main").textContent()).toContain("revoked");
    await expect
      .poll(
        async (): Promise<number> => {
          try {
            await client.models.list();
            return 200;
          } catch (err) {
            return err instanceof OpenAI.APIError ? Number(err.status) : -1;
          }
        },
        { timeout: 15_000, interval: 500 },
      )
      .toBe(401);
    await screenshot(page, shots, "08-key-revoked");

    // Usage and billing shows the tenant's requests.
    await page.goto(`${gw}/dashboard/usage?tenant_id=${tenantId}`);
    expect(await page.locator("main").textContent()).toContain("sim-llama-8b");
    await screenshot(page, shots, "09-usage-billing");

    // Fleet: drain the node, see it draining, undrain it.
    await page.getByRole("link", { name: "Fleet" }).click();
    await screenshot(page, shots, "10-fleet");
    await page.getByRole("button", { name: "Drain local-1" }).click();
    await expect.poll(() => page.getByRole("button", { name: "Undrain local-1" }).count()).toBe(1);
    expect(await page.locator("main").textContent()).toContain("draining");
    const nodes = await adminJson<{ data: { id: string; status: string }[] }>(t.stack, "GET", "/nodes");
    expect(nodes.data.find((n) => n.id === "local-1")?.status).toBe("draining");
    await screenshot(page, shots, "11-fleet-draining");
    await page.getByRole("link", { name: "local-1" }).first().click();
    await screenshot(page, shots, "12-node");
    await page.getByRole("button", { name: "Undrain local-1" }).click();
    await expect.poll(() => page.getByRole("button", { name: "Drain local-1" }).count()).toBe(1);

    // The audit log finds the revocation and the sign-in.
    await page.goto(`${gw}/dashboard/audit`);
    await page.getByLabel("Action", { exact: true }).fill("api_key.");
    await page.getByRole("button", { name: "Search" }).click();
    await expect.poll(() => page.locator("main").textContent()).toContain("api_key.revoke");
    expect(await page.locator("main").textContent()).toContain(keyId);
    await screenshot(page, shots, "13-audit");
    await page.goto(`${gw}/dashboard/sso?tenant_id=${tenantId}`);
    await screenshot(page, shots, "14-sso-settings");
  }, 240_000);

  it("refuses forged changes: without the CSRF token, and from another site", async () => {
    const signedIn = await browser.newContext();
    const p = await signedIn.newPage();
    await p.goto(`${gw}/dashboard/login`);
    await p.getByLabel("Token or key").fill(t.stack.adminToken);
    await p.getByRole("button", { name: "Sign in", exact: true }).click();
    await p.waitForURL(`${gw}/dashboard`);
    // Same origin, session cookie sent, but no CSRF token: 403, nothing created.
    const status = await p.evaluate(
      `fetch(${JSON.stringify(`${gw}/dashboard/tenants`)}, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "name=Forged+Inc" }).then((r) => r.status)`,
    );
    expect(status).toBe(403);
    // Another site's page that posts a form to the dashboard: the SameSite=Strict cookie stays home.
    const evil: Server = createServer((_req, res) => {
      res.setHeader("content-type", "text/html");
      res.end(`<form id="f" method="post" action="${gw}/dashboard/tenants"><input name="name" value="Evil Corp"></form><script>document.getElementById("f").submit()</script>`);
    });
    await new Promise<void>((resolve) => evil.listen(0, "localhost", resolve));
    try {
      const landed = p.waitForResponse((r) => r.url() === `${gw}/dashboard/tenants` && r.request().method() === "POST");
      await p.goto(`http://localhost:${(evil.address() as AddressInfo).port}/`);
      expect((await landed).status()).toBe(401);
      await screenshot(p, shots, "15-cross-site-post-refused");
    } finally {
      await new Promise<void>((resolve) => evil.close(() => resolve()));
    }
    const tenants = await adminJson<{ data: { name: string }[] }>(t.stack, "GET", "/tenants?limit=200");
    expect(tenants.data.map((x) => x.name)).not.toContain("Forged Inc");
    expect(tenants.data.map((x) => x.name)).not.toContain("Evil Corp");
    await signedIn.close();
  }, 60_000);
});
