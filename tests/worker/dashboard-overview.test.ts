import { beforeAll, describe, expect, it } from "vitest";
import { admin, expectStatus, sandbox, type Sandbox } from "./admin-helpers.ts";
import { getPage, signIn } from "./dashboard-helpers.ts";
import { seedUsage } from "./usage-seed.ts";

const MINUTE = 60_000;
let a: Sandbox;
let b: Sandbox;
let modelA: string;
let modelB: string;

beforeAll(async () => {
  [a, b] = await Promise.all([sandbox(), sandbox()]);
  // Model names unique to this run, so a page showing one is showing this run's records.
  modelA = `overview-a-${a.tenantId}`;
  modelB = `overview-b-${b.tenantId}`;
  const now = Date.now();
  await seedUsage(a, [
    { at: new Date(now - 120 * MINUTE), streamed: true, ttftMs: 120, latencyMs: 800, promptTokens: 1_234_000, completionTokens: 56_000, costMicros: 7_890_000, model: modelA },
    { at: new Date(now - 10 * MINUTE), latencyMs: 400, promptTokens: 1000, completionTokens: 500, costMicros: 9_110_000, model: "sim-llama-8b", apiKeyId: a.adminKeyId },
    { at: new Date(now - 10 * MINUTE), status: "error", httpStatus: 502, latencyMs: 3000, model: modelA },
    { at: new Date(now - 9 * MINUTE), status: "rejected", httpStatus: 429, latencyMs: 3, model: modelA },
  ]);
  await seedUsage(b, [{ at: new Date(now - 30 * MINUTE), latencyMs: 50, promptTokens: 4_321_000, completionTokens: 7, costMicros: 3_330_000, model: modelB }]);
});

/** The value of a summary card. */
function card(html: string, label: string): string {
  const m = new RegExp(`<dt class="label">${label}</dt><dd class="value"[^>]*>([^<]*)</dd>`).exec(html);
  return m?.[1] ?? `(no ${label} card)`;
}

/** The body rows of a chart's table, as [period, ...values]. */
function chartRows(html: string, id: string): string[][] {
  const figure = new RegExp(`<figure class="chart"[^>]* id="${id}"[\\s\\S]*?</figure>`).exec(html)?.[0] ?? "";
  const body = /<tbody>([\s\S]*?)<\/tbody>/.exec(figure)?.[1] ?? "";
  return [...body.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].map((row) => [...(row[1] ?? "").matchAll(/<t[hd][^>]*>([\s\S]*?)<\/t[hd]>/g)].map((cell) => (cell[1] ?? "").replace(/<[^>]+>/g, "")));
}

/** The text of a top table (keys or models). */
function table(html: string, id: string): string {
  return (new RegExp(`<table id="${id}">[\\s\\S]*?</table>`).exec(html)?.[0] ?? "").replace(/<[^>]+>/g, " ");
}

describe("the overview page", () => {
  it("shows the operator a tenant's requests, tokens, cost, error rate and percentiles over the last 24 hours", async () => {
    const page = await getPage(await signIn(), `/dashboard?tenant_id=${a.tenantId}`);
    expect(page.status).toBe(200);
    expect(page.html).toContain("<h1>Overview</h1>");
    expect(card(page.html, "Requests")).toBe("4");
    expect(card(page.html, "Tokens")).toBe("1,291,500");
    expect(page.html).toContain("1,235,000 prompt, 56,500 completion");
    expect(card(page.html, "Cost")).toBe("$17.00");
    expect(card(page.html, "Error rate")).toBe("25%");
    expect(page.html).toContain("1 of 4 requests failed");
    // Completed requests took 400 and 800 ms: 400 + 0.95 × 400.
    expect(card(page.html, "p95 latency")).toBe("780 ms");
    expect(card(page.html, "p95 time to first token")).toBe("120 ms");
    expect(page.html).not.toContain(modelB);
    // The tenant is picked in the operator's tenant filter.
    expect(page.html).toMatch(new RegExp(`<option value="${a.tenantId}" selected="">`));
  });

  it("draws one point per hour of the last 24, with zeros and gaps where nothing happened", async () => {
    const page = await getPage(await signIn(), `/dashboard?range=24h&tenant_id=${a.tenantId}`);
    const requests = chartRows(page.html, "requests-chart");
    expect(requests).toHaveLength(24);
    expect(requests.every((r) => /^\d{4}-\d\d-\d\d \d\d:00 UTC$/.test(r[0] ?? ""))).toBe(true);
    expect(requests.reduce((n, r) => n + Number(r[1]), 0)).toBe(4);
    expect(requests.filter((r) => r[1] === "0").length).toBeGreaterThanOrEqual(22);
    const errors = chartRows(page.html, "errors-chart");
    expect(errors).toHaveLength(24);
    // Hours without requests have no error rate (a gap), not 0%.
    expect(errors.filter((r) => r[1] === "–").length).toBe(requests.filter((r) => r[1] === "0").length);
    const tokens = chartRows(page.html, "tokens-chart");
    expect(tokens.reduce((n, r) => n + Number((r[1] ?? "").replaceAll(",", "")) + Number((r[2] ?? "").replaceAll(",", "")), 0)).toBe(1_291_500);
    expect(chartRows(page.html, "cost-chart").some((r) => r[1] === "$7.89")).toBe(true);
    expect(chartRows(page.html, "latency-chart")).toHaveLength(24);
  });

  it("changes the buckets with the range: 7 and 30 days by day", async () => {
    const browser = await signIn();
    for (const [range, days] of [
      ["7d", 7],
      ["30d", 30],
    ] as const) {
      const page = await getPage(browser, `/dashboard?range=${range}&tenant_id=${a.tenantId}`);
      expect(page.status).toBe(200);
      expect(page.html).toMatch(new RegExp(`<option value="${range}" selected="">`));
      const requests = chartRows(page.html, "requests-chart");
      expect(requests).toHaveLength(days);
      expect(requests.every((r) => /^\d{4}-\d\d-\d\d 00:00 UTC$/.test(r[0] ?? ""))).toBe(true);
      expect(requests.reduce((n, r) => n + Number(r[1]), 0)).toBe(4);
      expect(page.html).toContain("Requests per day");
      expect(card(page.html, "Tokens")).toBe("1,291,500");
    }
  });

  it("ranks the top keys and models by tokens or by cost, with key names", async () => {
    const browser = await signIn();
    const byTokens = await getPage(browser, `/dashboard?tenant_id=${a.tenantId}&rank=tokens`);
    const keys = table(byTokens.html, "top-keys");
    expect(keys).toMatch(/app\s+\(sk-sy-/);
    expect(keys.indexOf("app")).toBeLessThan(keys.indexOf("ops"));
    expect(keys).toContain("1,290,000");
    const models = table(byTokens.html, "top-models");
    expect(models.indexOf(modelA)).toBeLessThan(models.indexOf("sim-llama-8b"));
    expect(models).toContain("$7.89");
    // By cost the order turns: the small request of `ops` cost more.
    const byCost = await getPage(browser, `/dashboard?tenant_id=${a.tenantId}&rank=cost`);
    expect(byCost.html).toContain("Top 10 models by cost");
    expect(byCost.html).toMatch(/<option value="cost" selected="">/);
    const costKeys = table(byCost.html, "top-keys");
    expect(costKeys.indexOf("ops")).toBeLessThan(costKeys.indexOf("app"));
    expect(costKeys).toContain("$9.11");
    const costModels = table(byCost.html, "top-models");
    expect(costModels.indexOf("sim-llama-8b")).toBeLessThan(costModels.indexOf(modelA));
  });

  it("shows the operator every tenant when no tenant is picked", async () => {
    const page = await getPage(await signIn(), "/dashboard");
    expect(page.status).toBe(200);
    const models = table(page.html, "top-models");
    expect(models).toContain(modelA);
    expect(models).toContain(modelB);
    expect(Number(card(page.html, "Requests").replaceAll(",", ""))).toBeGreaterThanOrEqual(5);
    expect(page.html).toContain("All tenants");
    // Across tenants a key's row says whose it is.
    const tenant = expectStatus(await admin<{ name: string }>("GET", `/tenants/${a.tenantId}`), 200);
    expect(table(page.html, "top-keys")).toMatch(new RegExp(`app\\s+\\(sk-sy-[^)]*, tenant ${tenant.name}\\)`));
  });

  it("shows a tenant admin only its own tenant's usage, and a 404 for another tenant", async () => {
    const browser = await signIn(a.adminKey);
    const page = await getPage(browser, "/dashboard");
    expect(page.status).toBe(200);
    expect(card(page.html, "Requests")).toBe("4");
    expect(card(page.html, "Tokens")).toBe("1,291,500");
    expect(card(page.html, "Cost")).toBe("$17.00");
    expect(card(page.html, "Error rate")).toBe("25%");
    expect(page.html).toContain(modelA);
    expect(page.html).not.toContain(modelB);
    expect(page.html).not.toContain("4,321,000");
    // No tenant filter for a tenant's users.
    expect(page.html).not.toContain('name="tenant_id"');
    const other = await getPage(browser, `/dashboard?tenant_id=${b.tenantId}`);
    expect(other.status).toBe(404);
    expect(other.html).not.toContain(modelB);
  });

  it("says there is no usage yet for a tenant without requests", async () => {
    const fresh = await sandbox();
    const page = await getPage(await signIn(fresh.adminKey), "/dashboard");
    expect(page.status).toBe(200);
    expect(page.html).toContain("No usage yet");
    expect(page.html).toContain("Look at the last 30 days");
    expect(page.html).not.toContain('id="requests-chart"');
  });
});
