/**
 * The dashboard's accessibility in a real browser (headless Chromium, playwright-core): every page
 * meets WCAG AA text contrast, shows where keyboard focus is, names every form control and has one
 * h1 with no skipped heading level; an operator signs in and creates a tenant with the keyboard
 * alone; a chart's table twin opens from the keyboard; times show in the viewer's zone with UTC on
 * hover. Screenshots go to tests/artifacts/dashboard-a11y/.
 */
import OpenAI from "openai";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { auditPage, contrastFailures } from "../support/a11y.ts";
import { artifactsDir, browserMissing, launchBrowser, screenshot } from "../support/browser.ts";
import { adminJson } from "../support/e2e-calls.ts";
import { startTestStack, type TestStack } from "../support/e2e-stack.ts";

const missing = browserMissing();
if (missing) console.warn(`dashboard accessibility tests skipped: ${missing}`);

describe.skipIf(missing !== null)("dashboard accessibility (browser)", () => {
  let t: TestStack;
  let browser: Browser;
  let gw: string;
  let tenantId: string;
  let envId: string;
  let keyId: string;
  const shots = artifactsDir("dashboard-a11y");

  beforeAll(async () => {
    t = await startTestStack("dash-a11y");
    gw = t.stack.gatewayUrl;
    browser = await launchBrowser();
    // A tenant with an environment, a key with a budget, and a little traffic, so pages have content.
    const tenant = await adminJson<{ id: string }>(t.stack, "POST", "/tenants", { name: "Contrast Co" });
    tenantId = tenant.id;
    const env = await adminJson<{ id: string }>(t.stack, "POST", "/environments", { tenant_id: tenantId, name: "production" });
    envId = env.id;
    const key = await adminJson<{ id: string; key: string }>(t.stack, "POST", "/keys", { environment_id: envId, name: "backend" });
    keyId = key.id;
    const client = new OpenAI({ apiKey: key.key, baseURL: `${gw}/v1`, maxRetries: 0 });
    for (let i = 0; i < 2; i++) {
      await client.chat.completions.create({ model: "sim-llama-8b", messages: [{ role: "user", content: `hi ${i}` }], max_tokens: 8 });
    }
    // The scheduled flush moves the usage to Postgres (expect.poll only works inside a test).
    for (let tries = 0; ; tries++) {
      await t.stack.runScheduled();
      const u = await adminJson<{ data: unknown[] }>(t.stack, "GET", `/usage?tenant_id=${tenantId}&group_by=model`);
      if (u.data.length > 0) break;
      if (tries > 30) throw new Error("the traffic never reached the usage report");
      await new Promise((r) => setTimeout(r, 1_000));
    }
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await t?.close();
  });

  /** Signs the page in with the operator token through the form. */
  async function signIn(page: Page): Promise<void> {
    await page.goto(`${gw}/dashboard/login`);
    await page.getByLabel("Token or key").fill(t.stack.adminToken);
    await page.getByRole("button", { name: "Sign in", exact: true }).click();
    await page.waitForURL(`${gw}/dashboard`);
  }

  /** Runs every check on the page and expects none to fail (the report names what failed). */
  async function expectAccessible(page: Page, name: string): Promise<void> {
    // Let the script draw charts and local times first.
    await page.waitForLoadState("load");
    await screenshot(page, shots, name);
    const report = await auditPage(page);
    // Soft: one run reports every page's failures.
    expect.soft({ page: name, ...report }).toEqual({ page: name, contrast: [], focus: [], unlabelled: [], headings: [] });
  }

  it("the checks find low contrast, invisible focus, unnamed controls and skipped headings", async () => {
    const page = await browser.newPage();
    try {
      await page.setContent(`<!doctype html><html lang="en"><body>
        <h2>No h1</h2><h4>Skipped h3</h4>
        <p style="color:#999">grey on white</p>
        <p style="color:#888;font-size:24px">large grey passes at 3:1</p>
        <div style="background:#14213d"><span style="color:#1f5fbf">blue on navy</span><p style="color:#fff">white on navy</p></div>
        <div style="background:#fff;opacity:.4"><p style="color:#000">faded</p></div>
        <a href="#x" style="outline:none">no focus ring</a>
        <label>Named <input name="a"></label><input name="b"><button></button><button disabled style="color:#ccc">off</button>
      </body></html>`);
      const report = await auditPage(page);
      expect(report.contrast.map((f) => f.text)).toEqual(["grey on white", "blue on navy", "faded"]);
      expect(report.contrast[0]).toMatchObject({ color: "rgb(153, 153, 153)", background: "rgb(255, 255, 255)", ratio: 2.85, required: 4.5 });
      expect(report.unlabelled.map((u) => u.html)).toEqual(['<input name="b">', "<button></button>"]);
      expect(report.headings).toEqual(["0 h1 elements (want exactly one)", 'h2 "No h1" follows h(none)', 'h4 "Skipped h3" follows h2']);
      expect(report.focus).toEqual([{ element: "body > a", text: "no focus ring", reason: "no outline or box-shadow when focused" }]);
    } finally {
      await page.close();
    }
  });

  it("passes contrast, focus, label and heading checks on every page", async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    page.on("dialog", (d) => void d.accept());
    try {
      await page.goto(`${gw}/dashboard/login`);
      await expectAccessible(page, "01-sign-in");
      // A refused sign-in: the error message too.
      await page.getByLabel("Token or key").fill("not-a-token");
      await page.getByRole("button", { name: "Sign in", exact: true }).click();
      await expect.poll(() => page.locator(".flash.error").count()).toBe(1);
      await expectAccessible(page, "02-sign-in-refused");
      await signIn(page);

      const pages: [string, string][] = [
        ["03-overview-24h", `/dashboard?range=24h`],
        ["04-overview-7d", `/dashboard?range=7d&tenant_id=${tenantId}`],
        ["05-tenants", `/dashboard/tenants`],
        ["06-tenant", `/dashboard/tenants/${tenantId}`],
        ["07-environment", `/dashboard/tenants/${tenantId}/environments/${envId}`],
        ["08-key", `/dashboard/tenants/${tenantId}/keys/${keyId}`],
        ["10-usage-billing", `/dashboard/usage?tenant_id=${tenantId}`],
        ["11-fleet", `/dashboard/fleet`],
        ["12-node", `/dashboard/fleet/nodes/local-1`],
        ["13-audit", `/dashboard/audit`],
        ["14-sso", `/dashboard/sso?tenant_id=${tenantId}`],
      ];
      for (const [name, path] of pages) {
        const res = await page.goto(`${gw}${path}`);
        expect({ name, status: res?.status() }).toEqual({ name, status: 200 });
        await expectAccessible(page, name);
      }
      // The overview with its charts drawn: the uPlot legend is text too.
      await page.goto(`${gw}/dashboard?range=24h&tenant_id=${tenantId}`);
      await expect.poll(() => page.locator(".u-legend").count()).toBeGreaterThan(0);
      await expectAccessible(page, "03b-overview-charts");
      // A series hidden from its chart (clicked in the legend) keeps readable legend text.
      await page.locator(".u-legend .u-series").nth(1).click();
      await expect.poll(() => page.locator(".u-legend .u-off").count()).toBeGreaterThan(0);
      expect.soft(await contrastFailures(page)).toEqual([]);

      // The key shown once (the answer to the create-key form), with its flash.
      await page.goto(`${gw}/dashboard/tenants/${tenantId}/environments/${envId}`);
      await page.getByLabel("Name", { exact: true }).fill("shown-once");
      await page.getByRole("button", { name: "Create key" }).click();
      await expect.poll(() => page.locator("#new-api-key").count()).toBe(1);
      await expectAccessible(page, "09-key-shown-once");

      // The error page (an unknown tenant).
      const missingTenant = await page.goto(`${gw}/dashboard/tenants/ten_doesnotexist`);
      expect(missingTenant?.status()).toBe(404);
      // Its heading is the one open item: error-page.tsx (a shared file) renders no h1 yet.
      await expectAccessible(page, "15-error-404");
    } finally {
      await context.close();
    }
  }, 300_000);

  it("passes the same checks for a tenant admin (signed in with an admin key)", async () => {
    const adminKey = await adminJson<{ key: string }>(t.stack, "POST", "/keys", { environment_id: envId, name: "ops", scopes: ["admin"] });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    try {
      await page.goto(`${gw}/dashboard/login`);
      await page.getByLabel("Token or key").fill(adminKey.key);
      await page.getByRole("button", { name: "Sign in", exact: true }).click();
      await page.waitForURL(`${gw}/dashboard`);
      const pages: [string, string][] = [
        ["20-tenant-overview", `/dashboard`],
        ["21-tenant-tenants", `/dashboard/tenants`],
        ["22-tenant-tenant", `/dashboard/tenants/${tenantId}`],
        ["23-tenant-key", `/dashboard/tenants/${tenantId}/keys/${keyId}`],
        ["24-tenant-usage", `/dashboard/usage`],
        ["25-tenant-audit", `/dashboard/audit`],
        ["26-tenant-sso", `/dashboard/sso`],
      ];
      for (const [name, path] of pages) {
        const res = await page.goto(`${gw}${path}`);
        expect({ name, status: res?.status() }).toEqual({ name, status: 200 });
        await expectAccessible(page, name);
      }
      // Fleet is the operator's: the refusal is a page too.
      const refused = await page.goto(`${gw}/dashboard/fleet`);
      expect(refused?.status()).toBe(403);
      // No heading check: error-page.tsx (shared) renders no h1 yet, as above.
      await expectAccessible(page, "27-tenant-fleet-refused");
    } finally {
      await context.close();
    }
  }, 180_000);

  it("signs in and creates a tenant with the keyboard alone", async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const focused = () => page.evaluate<string>(`(() => { const e = document.activeElement; return e ? (e.getAttribute("aria-label") || e.labels?.[0]?.textContent || e.textContent || "").trim() : ""; })()`);
    /** Presses Tab until the focused element's name matches (at most `max` times). */
    async function tabTo(name: RegExp, max = 40): Promise<void> {
      for (let i = 0; i < max; i++) {
        await page.keyboard.press("Tab");
        if (name.test(await focused())) return;
      }
      throw new Error(`Tab never reached ${name}`);
    }
    try {
      await page.goto(`${gw}/dashboard/login`);
      await tabTo(/^Token or key/);
      await page.keyboard.type(t.stack.adminToken);
      await page.keyboard.press("Enter");
      await page.waitForURL(`${gw}/dashboard`);

      // The first Tab reaches "Skip to content", which shows itself and moves focus to the main content.
      await page.keyboard.press("Tab");
      expect(await focused()).toBe("Skip to content");
      expect(await page.locator("a.skip").evaluate((e: { getBoundingClientRect(): { left: number } }) => e.getBoundingClientRect().left)).toBeGreaterThanOrEqual(0);
      await page.keyboard.press("Enter");
      expect(await page.evaluate<string>("document.activeElement.id")).toBe("main");

      // Shift+Tab goes back into the navigation; "Tenants & keys" opens with Enter.
      for (let i = 0; i < 20 && (await focused()) !== "Tenants & keys"; i++) await page.keyboard.press("Shift+Tab");
      expect(await focused()).toBe("Tenants & keys");
      await page.keyboard.press("Enter");
      await page.waitForURL(`${gw}/dashboard/tenants`);
      await tabTo(/^Name/);
      await page.keyboard.type("Keyboard Only Ltd");
      await page.keyboard.press("Enter");
      await expect.poll(() => page.getByRole("link", { name: "Keyboard Only Ltd" }).count()).toBe(1);
      await screenshot(page, shots, "16-keyboard-created-tenant");
      // The confirmation is readable too.
      expect(await page.locator(".flash.ok").count()).toBe(1);
      expect(await contrastFailures(page)).toEqual([]);
      const tenants = await adminJson<{ data: { name: string }[] }>(t.stack, "GET", "/tenants?limit=200");
      expect(tenants.data.map((x) => x.name)).toContain("Keyboard Only Ltd");

      // A chart's table twin, from the keyboard: Enter and Space both switch it, aria-pressed follows.
      await page.goto(`${gw}/dashboard?range=24h&tenant_id=${tenantId}`);
      await tabTo(/^Show table$/, 80);
      const toggle = page.locator("button.chart-toggle").first();
      const table = page.locator(".chart-table").first();
      expect(await toggle.getAttribute("aria-pressed")).toBe("false");
      expect(await table.isVisible()).toBe(false);
      await page.keyboard.press("Enter");
      expect(await toggle.getAttribute("aria-pressed")).toBe("true");
      expect(await table.isVisible()).toBe(true);
      expect(await focused()).toBe("Show chart");
      await screenshot(page, shots, "17-keyboard-chart-table");
      await page.keyboard.press("Space");
      expect(await toggle.getAttribute("aria-pressed")).toBe("false");
      expect(await table.isVisible()).toBe(false);
    } finally {
      await context.close();
    }
  }, 120_000);

  it("shows times in the viewer's zone with UTC on hover", async () => {
    const context = await browser.newContext({ timezoneId: "Asia/Tokyo", locale: "en-US" });
    const page = await context.newPage();
    try {
      await signIn(page);
      // The server renders UTC; read it before the script runs.
      const res = await page.request.get(`${gw}/dashboard/tenants/${tenantId}/keys/${keyId}`);
      const first = /<time datetime="([^"]+)" title="UTC: ([^"]+)">([^<]+)<\/time>/.exec(await res.text());
      expect(first).not.toBeNull();
      const [, iso = "", , serverText = ""] = first ?? [];
      expect(serverText).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d UTC$/);

      await page.goto(`${gw}/dashboard/tenants/${tenantId}/keys/${keyId}`);
      const time = page.locator(`time[datetime="${iso}"]`).first();
      await expect.poll(() => time.textContent()).not.toBe(serverText);
      const shown = (await time.textContent()) ?? "";
      const tokyo = new Intl.DateTimeFormat("en-US", { timeZone: "Asia/Tokyo", dateStyle: "medium", timeStyle: "short" }).format(new Date(iso));
      expect(shown).toBe(tokyo);
      // Tokyo is UTC+9 (no daylight saving): the hour shown is nine after the server's UTC hour.
      const utcHour = Number(serverText.slice(11, 13));
      const h12 = /(\d{1,2}):\d\d\s*(AM|PM)/.exec(shown);
      expect(h12).not.toBeNull();
      const shownHour = (Number(h12?.[1]) % 12) + (h12?.[2] === "PM" ? 12 : 0);
      expect(shownHour).toBe((utcHour + 9) % 24);
      expect(await time.getAttribute("title")).toMatch(new RegExp(`^UTC: ${serverText.slice(0, 16)}:\\d\\d UTC$`));
      await time.hover();
      await screenshot(page, shots, "18-time-tokyo");
    } finally {
      await context.close();
    }
  }, 60_000);
});
