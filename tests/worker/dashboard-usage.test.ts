import { eq } from "drizzle-orm";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { reconciliations, tenants, usageHourly } from "../../schema/tables/index.ts";
import type { CreditGrantJson } from "../../worker/src/admin/wire.ts";
import { admin, expectStatus, sandbox, type List, type Sandbox } from "./admin-helpers.ts";
import { getPage, postForm, signIn } from "./dashboard-helpers.ts";
import { gateway, query } from "./helpers.ts";

// Seeded hourly rollups in a past month no other test writes to for these tenants.
const DAY1 = "2026-10-05";
const DAY2 = "2026-10-06";
const LATER = "2026-10-09"; // outside the range DAY1..DAY2

let a: Sandbox;
let b: Sandbox;
let modelA: string;
let modelB: string;
let otherModel: string;

type Seed = { hour: string; tenant: Sandbox; key: "app" | "ops"; model: string; requests: number; prompt: number; completion: number; cost: number; credit: number };

async function seed(rows: Seed[]): Promise<void> {
  await query((db) =>
    db.insert(usageHourly).values(
      rows.map((r) => ({
        hour: new Date(r.hour),
        tenantId: r.tenant.tenantId,
        environmentId: r.tenant.environmentId,
        apiKeyId: r.key === "app" ? r.tenant.keyId : r.tenant.adminKeyId,
        model: r.model,
        requests: r.requests,
        promptTokens: r.prompt,
        completionTokens: r.completion,
        costMicros: r.cost,
        creditMicros: r.credit,
      })),
    ),
  );
}

/** The text of each cell of the row `<tr data-<attr>="value">`, tags stripped (null if absent). */
function row(html: string, attr: string, value: string): string[] | null {
  const tr = new RegExp(`<tr data-${attr}="${value.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}"[^>]*>([\\s\\S]*?)</tr>`).exec(html);
  if (!tr) return null;
  return [...(tr[1] ?? "").matchAll(/<t[hd][^>]*>([\s\S]*?)<\/t[hd]>/g)].map((m) => (m[1] ?? "").replace(/<[^>]+>/g, "").replace(/\s+/g, " ").trim());
}

/** The cells of the chart's table twin at one bucket. */
function chartRow(html: string, datetime: string): string[] | null {
  const tr = new RegExp(`<tr><th scope="row"><time datetime="${datetime}"[\\s\\S]*?</tr>`).exec(html);
  return tr ? [...tr[0].matchAll(/<t[hd][^>]*>([\s\S]*?)<\/t[hd]>/g)].map((m) => (m[1] ?? "").replace(/<[^>]+>/g, "").trim()) : null;
}

function section(html: string, id: string): string {
  const start = html.indexOf(`<section aria-labelledby="${id}"`);
  return start < 0 ? "" : html.slice(start, html.indexOf("</section>", start));
}

beforeAll(async () => {
  [a, b] = await Promise.all([sandbox(), sandbox()]);
  const tag = crypto.randomUUID().slice(0, 8);
  modelA = `alpha-${tag}`;
  modelB = `beta-${tag}`;
  otherModel = `other-${tag}`;
  await seed([
    { hour: `${DAY1}T09:00:00Z`, tenant: a, key: "app", model: modelA, requests: 3, prompt: 1200, completion: 300, cost: 4_000, credit: 1_000 },
    { hour: `${DAY1}T10:00:00Z`, tenant: a, key: "ops", model: modelA, requests: 2, prompt: 800, completion: 200, cost: 2_000, credit: 0 },
    { hour: `${DAY2}T23:00:00Z`, tenant: a, key: "app", model: modelB, requests: 5, prompt: 100, completion: 50, cost: 1_500, credit: 500 },
    { hour: `${LATER}T12:00:00Z`, tenant: a, key: "app", model: modelA, requests: 7, prompt: 7_000, completion: 700, cost: 9_000, credit: 0 },
    { hour: `${DAY1}T11:00:00Z`, tenant: b, key: "app", model: otherModel, requests: 4, prompt: 400, completion: 40, cost: 800, credit: 0 },
  ]);
});

describe("dashboard usage report", () => {
  it("shows the range's usage per model with the right sums and totals, leaving out days outside it", async () => {
    const browser = await signIn();
    const page = await getPage(browser, `/dashboard/usage?tenant_id=${a.tenantId}&start=${DAY1}&end=${DAY2}&group_by=model&bucket=day`);
    expect(page.status).toBe(200);
    // Model, requests, prompt, completion, total, cost, credits, billable.
    expect(row(page.html, "group", modelA)).toEqual([modelA, "5", "2,000", "500", "2,500", "$0.006", "$0.001", "$0.005"]);
    expect(row(page.html, "group", modelB)).toEqual([modelB, "5", "100", "50", "150", "$0.0015", "$0.0005", "$0.001"]);
    expect(row(page.html, "group", "total")).toEqual(["Total", "10", "2,100", "550", "2,650", "$0.0075", "$0.0015", "$0.006"]);
    expect(page.html).not.toContain(otherModel);
    // The chart's table twin has one row per day of the range.
    expect(page.html).toContain('id="usage-tokens"');
    expect(page.html).toContain(`${modelA} (tokens)`);
    expect(chartRow(page.html, "2026-10-05T00:00:00.000Z")).toEqual(["2026-10-05 00:00 UTC", "2,500", "0"]);
    expect(chartRow(page.html, "2026-10-06T00:00:00.000Z")).toEqual(["2026-10-06 00:00 UTC", "0", "150"]);
    expect(chartRow(page.html, "2026-10-07T00:00:00.000Z")).toBeNull();

    const wider = await getPage(browser, `/dashboard/usage?tenant_id=${a.tenantId}&start=${DAY1}&end=${LATER}&group_by=model`);
    expect(row(wider.html, "group", modelA)?.[1]).toBe("12");
  });

  it("groups by key with the keys' names beside their ids", async () => {
    const browser = await signIn();
    const page = await getPage(browser, `/dashboard/usage?tenant_id=${a.tenantId}&start=${DAY1}&end=${DAY2}&group_by=key&bucket=hour`);
    expect(page.status).toBe(200);
    const app = row(page.html, "group", a.keyId);
    expect(app?.[0]).toContain("app");
    expect(app?.slice(1, 3)).toEqual(["8", "1,300"]);
    expect(row(page.html, "group", a.adminKeyId)?.[0]).toContain("ops");
  });

  it("downloads the admin API's CSV for the same range", async () => {
    const browser = await signIn();
    const res = await getPage(browser, `/dashboard/usage/export.csv?tenant_id=${a.tenantId}&start=${DAY1}&end=${DAY2}&group_by=model&bucket=day`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/csv");
    expect(res.headers.get("content-disposition")).toMatch(/^attachment; filename="usage-.+\.csv"$/);
    const direct = await gateway(`/admin/usage?tenant_id=${a.tenantId}&start=${DAY1}&end=2026-10-07&group_by=model&bucket=day&format=csv`, {
      key: null,
      headers: { authorization: `Bearer ${inject("adminToken")}` },
    });
    expect(direct.status).toBe(200);
    expect(res.html).toBe(await direct.text());
    expect(res.html.split("\r\n").filter((l) => l.includes(modelA))).toHaveLength(1);
  });

  it("shows the API's message for a range it refuses", async () => {
    const browser = await signIn();
    const page = await getPage(browser, `/dashboard/usage?start=${DAY2}&end=2026-10-01`);
    expect(page.status).toBe(400);
    expect(page.html).toContain("Invalid end: it must be after start.");
  });
});

describe("dashboard credits", () => {
  it("lets the operator grant credits and void a grant through the forms", async () => {
    const browser = await signIn();
    const note = `launch ${crypto.randomUUID().slice(0, 6)}`;
    const granted = await postForm(browser, "/dashboard/usage/credits", { tenant_id: a.tenantId, kind: "promotion", amount_usd: "12.5", expires_on: "", note });
    expect(granted.status).toBe(303);
    expect(granted.location).toBe("/dashboard/usage#credits");
    const after = await getPage(browser, `/dashboard/usage?tenant_id=${a.tenantId}`);
    expect(after.html).toContain("Granted $12.50 of credits");
    const list = expectStatus(await admin<List<CreditGrantJson>>("GET", `/credits?tenant_id=${a.tenantId}`), 200);
    const grant = list.data.find((g) => g.note === note);
    expect(grant).toMatchObject({ kind: "promotion", amount_micros: 12_500_000, remaining_micros: 12_500_000, expires_at: null });
    if (!grant) throw new Error("no grant");
    expect(row(section(after.html, "credits"), "grant", grant.id)).toContain("Active");

    const voided = await postForm(browser, `/dashboard/usage/credits/${grant.id}/void`);
    expect(voided.status).toBe(303);
    const page = await getPage(browser, `/dashboard/usage?tenant_id=${a.tenantId}`);
    expect(page.html).toContain(`Voided grant ${grant.id}`);
    expect(row(section(page.html, "credits"), "grant", grant.id)).toContain("Used up or voided");
    expect(expectStatus(await admin<CreditGrantJson>("GET", `/credits/${grant.id}`), 200).remaining_micros).toBe(0);
  });

  it("answers a bad amount with a message and grants nothing", async () => {
    const browser = await signIn();
    const res = await postForm(browser, "/dashboard/usage/credits", { tenant_id: a.tenantId, kind: "promotion", amount_usd: "lots", note: "bad" });
    expect(res.status).toBe(303);
    expect((await getPage(browser, "/dashboard/usage")).html).toContain("Enter the amount in US dollars");
    const list = expectStatus(await admin<List<CreditGrantJson>>("GET", `/credits?tenant_id=${a.tenantId}`), 200);
    expect(list.data.some((g) => g.note === "bad")).toBe(false);
  });
});

describe("dashboard usage for a tenant admin", () => {
  it("shows only its own usage, credits and Stripe line, and no operator sections", async () => {
    const noteA = `mine ${crypto.randomUUID().slice(0, 6)}`;
    const noteB = `theirs ${crypto.randomUUID().slice(0, 6)}`;
    expectStatus(await admin("POST", "/credits", { tenant_id: a.tenantId, kind: "free_tier", amount_usd: 5, note: noteA }), 201);
    expectStatus(await admin("POST", "/credits", { tenant_id: b.tenantId, kind: "free_tier", amount_usd: 5, note: noteB }), 201);
    const browser = await signIn(a.adminKey);
    const page = await getPage(browser, `/dashboard/usage?start=${DAY1}&end=${DAY2}&group_by=model`);
    expect(page.status).toBe(200);
    expect(row(page.html, "group", modelA)?.[1]).toBe("5");
    expect(page.html).not.toContain(otherModel);
    expect(page.html).not.toContain(b.tenantId);
    expect(section(page.html, "credits")).toContain(noteA);
    expect(page.html).not.toContain(noteB);
    expect(page.html).not.toContain("Grant credits");
    expect(row(section(page.html, "stripe"), "tenant", a.tenantId)).not.toBeNull();
    expect(page.html).not.toContain("Monthly billing export");
    expect(page.html).not.toContain("Reconciliation drift");
    // No group by tenant for a tenant.
    expect(page.html).not.toContain('<option value="tenant"');
  });

  it("gets 404 for another tenant's usage and 403 for the operator's downloads and actions", async () => {
    const browser = await signIn(a.adminKey);
    expect((await getPage(browser, `/dashboard/usage?tenant_id=${b.tenantId}`)).status).toBe(404);
    expect((await getPage(browser, `/dashboard/usage/export.csv?tenant_id=${b.tenantId}`)).status).toBe(404);
    const own = await getPage(browser, `/dashboard/usage/export.csv?start=${DAY1}&end=${DAY2}&group_by=model`);
    expect(own.status).toBe(200);
    expect(own.html).toContain(modelA);
    expect(own.html).not.toContain(otherModel);
    expect((await getPage(browser, "/dashboard/usage/billing-export?period=2026-10")).status).toBe(403);
    const grant = await postForm(browser, "/dashboard/usage/credits", { tenant_id: a.tenantId, kind: "promotion", amount_usd: "1000", note: "self-serve" });
    expect(grant.status).toBe(303);
    expect((await getPage(browser, "/dashboard/usage")).html).toContain("Only the operator");
    const list = expectStatus(await admin<List<CreditGrantJson>>("GET", `/credits?tenant_id=${a.tenantId}`), 200);
    expect(list.data.some((g) => g.note === "self-serve")).toBe(false);
  });
});

describe("dashboard billing for the operator", () => {
  it("downloads the month's billing export as the admin API writes it", async () => {
    const browser = await signIn();
    const res = await getPage(browser, `/dashboard/usage/billing-export?period=2026-10&format=csv&tenant_id=${a.tenantId}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/csv");
    expect(res.headers.get("content-disposition")).toBe(`attachment; filename="billing-2026-10-${a.tenantId}.csv"`);
    const direct = await gateway(`/admin/billing/export?period=2026-10&format=csv&tenant_id=${a.tenantId}`, { key: null, headers: { authorization: `Bearer ${inject("adminToken")}` } });
    expect(res.html).toBe(await direct.text());
    const lines = res.html.trim().split("\n");
    expect(lines).toHaveLength(3);
    expect(lines.find((l) => l.includes(`,${modelA},`))).toContain(",12,"); // 3 + 2 + 7 requests in October

    const json = await getPage(browser, `/dashboard/usage/billing-export?period=2026-10&format=json&tenant_id=${a.tenantId}`);
    expect(json.headers.get("content-type")).toContain("application/json");
    expect((JSON.parse(json.html) as { period: string }).period).toBe("2026-10");
    expect((await getPage(browser, "/dashboard/usage/billing-export?period=2026-13")).status).toBe(400);
  });

  it("shows each tenant's Stripe state and the latest reconciliation windows with alerts in words", async () => {
    const customer = `cus_${crypto.randomUUID().replaceAll("-", "").slice(0, 14)}`;
    expectStatus(await admin("PATCH", `/tenants/${a.tenantId}`, { stripe_customer_id: customer, plan: "pro" }), 200);
    await query((db) => db.update(tenants).set({ paymentEventAt: new Date("2026-11-02T08:30:00Z"), billedThrough: new Date("2026-11-01T00:00:00Z") }).where(eq(tenants.id, a.tenantId)));
    const node = `node-${crypto.randomUUID().slice(0, 8)}`;
    const end = new Date(Math.floor(Date.now() / 60_000) * 60_000 - 10 * 60_000);
    const base = { nodeId: node, windowStart: new Date(end.getTime() - 3_600_000), windowEnd: end, enginePromptTokens: 10_000, meteredPromptTokens: 9_000, driftPromptTokens: 1_000 };
    await query((db) =>
      db.insert(reconciliations).values({
        ...base,
        id: `rec_${node}_${end.getTime()}`,
        engineGenerationTokens: 2_000,
        meteredCompletionTokens: 2_000,
        driftGenerationTokens: 0,
        driftRatio: 1_000 / 12_000,
        alert: true,
      }),
    );
    const browser = await signIn();
    const page = await getPage(browser, "/dashboard/usage");
    expect(page.status).toBe(200);
    const stripe = row(section(page.html, "stripe"), "tenant", a.tenantId);
    expect(stripe?.[1]).toBe(customer);
    expect(stripe?.slice(2, 6)).toEqual(["Active", "pro", "2026-11-01 00:00 UTC", "2026-11-02 08:30 UTC"]);
    expect(row(section(page.html, "stripe"), "tenant", b.tenantId)?.[1]).toBe("not linked");
    const recon = row(section(page.html, "reconciliation"), "reconciliation", `rec_${node}_${end.getTime()}`);
    expect(recon?.slice(2)).toEqual(["11,000", "12,000", "+1,000 (prompt 1,000, generation 0)", "8.33%", "Alert: drift over threshold"]);
    expect(page.html).toContain("Monthly billing export");
    expect(page.html).toMatch(/<input type="month" name="period" value="\d{4}-\d{2}"/);
  });
});
