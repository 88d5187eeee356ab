import { env } from "cloudflare:test";
import { eq, sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { creditGrants, usageHourly, usageRecords } from "../../schema/tables/index.ts";
import type { CreditGrantJson } from "../../worker/src/admin/wire.ts";
import { allocateCredits, type Grant } from "../../worker/src/metering/credits.ts";
import { usageOutboxKey, writeUsageBatch } from "../../worker/src/metering/flush.ts";
import type { UsageRow } from "../../worker/src/metering/record.ts";
import { enqueue } from "../../worker/src/platform/outbox.ts";
import { admin, expectStatus, sandbox, type ErrorBody, type List } from "./admin-helpers.ts";
import { eventually, flushNow, gateway, post, query, redis } from "./helpers.ts";

const HOUR = 3_600_000;

function row(tenantId: string, id: string, at: Date, costMicros: number): UsageRow {
  return {
    id,
    at,
    tenantId,
    environmentId: "env_c",
    apiKeyId: "key_c",
    endpoint: "chat",
    model: "sim-llama-8b",
    regionId: "local",
    nodeId: "n",
    status: "ok",
    httpStatus: 200,
    streamed: false,
    promptTokens: 10,
    completionTokens: 5,
    cachedPromptTokens: 0,
    ttftMs: 1,
    latencyMs: 2,
    costMicros,
    errorCode: null,
  };
}

async function grant(tenantId: string, body: Record<string, unknown>): Promise<CreditGrantJson> {
  return expectStatus(await admin<CreditGrantJson>("POST", "/credits", { tenant_id: tenantId, kind: "promotion", ...body }), 201);
}

async function remaining(id: string): Promise<number> {
  const [g] = await query((db) => db.select({ r: creditGrants.remainingMicros }).from(creditGrants).where(eq(creditGrants.id, id)));
  return g?.r ?? -1;
}

async function creditsOf(tenantId: string) {
  return query(async (db) => {
    const records = await db.select({ id: usageRecords.id, cost: usageRecords.costMicros, credit: usageRecords.creditMicros }).from(usageRecords).where(eq(usageRecords.tenantId, tenantId));
    const [hourly] = await db
      .select({ cost: sql<number>`coalesce(sum(cost_micros),0)::int`, credit: sql<number>`coalesce(sum(credit_micros),0)::int` })
      .from(usageHourly)
      .where(eq(usageHourly.tenantId, tenantId));
    return { byId: Object.fromEntries(records.map((r) => [r.id, r.credit])), hourly };
  });
}

describe("credit allocation", () => {
  const t0 = new Date(Date.UTC(2026, 10, 1));
  const at = (h: number) => new Date(t0.getTime() + h * HOUR);
  const g = (id: string, remainingMicros: number, createdH: number, expiresH: number | null): Grant => ({
    id,
    tenantId: "t",
    remainingMicros,
    createdAt: at(createdH),
    expiresAt: expiresH === null ? null : at(expiresH),
  });

  it("pays records oldest first from the soonest-expiring grant that covers their time", () => {
    const grants = [g("forever", 100, 0, null), g("soon", 30, 0, 10), g("later", 50, 5, 20)];
    const credits = allocateCredits(
      [
        { id: "r3", tenantId: "t", at: at(6), costMicros: 40 }, // soon has 10 left, then later 30
        { id: "r1", tenantId: "t", at: at(1), costMicros: 20 }, // soon: 20 (later not yet created)
        { id: "r4", tenantId: "t", at: at(30), costMicros: 500 }, // only forever: 100
        { id: "other", tenantId: "u", at: at(1), costMicros: 7 }, // another tenant: nothing
      ],
      grants,
    );
    expect(Object.fromEntries(credits)).toEqual({ r1: 20, r3: 40, r4: 100 });
    expect(grants.map((x) => [x.id, x.remainingMicros])).toEqual([
      ["forever", 0],
      ["soon", 0],
      ["later", 20],
    ]);
  });

  it("does not use a grant for usage before its creation or at and after its expiry", () => {
    const grants = [g("window", 100, 5, 10)];
    const credits = allocateCredits(
      [
        { id: "before", tenantId: "t", at: at(4), costMicros: 10 },
        { id: "expiry", tenantId: "t", at: at(10), costMicros: 10 },
      ],
      grants,
    );
    expect(credits.size).toBe(0);
    expect(grants[0]?.remainingMicros).toBe(100);
  });
});

describe("credits in the usage flush", () => {
  it("draw the cost of flushed records, keep the rollups equal to the records, and draw nothing twice on redelivery", async () => {
    const tenant = await sandbox();
    const small = await grant(tenant.tenantId, { amount_micros: 25, kind: "free_tier" });
    const big = await grant(tenant.tenantId, { amount_micros: 1000, expires_at: new Date(Date.now() + 30 * 24 * HOUR).toISOString() });
    const now = Date.now();
    const rows = [row(tenant.tenantId, `${tenant.tenantId}_a`, new Date(now), 600), row(tenant.tenantId, `${tenant.tenantId}_b`, new Date(now + 1), 600)];
    for (const r of rows) await enqueue(redis(), usageOutboxKey(env.REDIS_PREFIX), r);
    await flushNow();

    // The expiring grant goes first: 600 from `big`, then 400 from `big` + 25 from `small`; 175 billable.
    const first = await creditsOf(tenant.tenantId);
    expect(first.byId).toEqual({ [`${tenant.tenantId}_a`]: 600, [`${tenant.tenantId}_b`]: 425 });
    expect(first.hourly).toEqual({ cost: 1200, credit: 1025 });
    expect(await remaining(big.id)).toBe(0);
    expect(await remaining(small.id)).toBe(0);

    // The same batch delivered again inserts nothing and draws nothing.
    const top = await grant(tenant.tenantId, { amount_micros: 5000 });
    await query((db) => writeUsageBatch(db, rows.map((r) => ({ ...r, at: r.at.toISOString() }))));
    expect(await creditsOf(tenant.tenantId)).toEqual(first);
    expect(await remaining(top.id)).toBe(5000);

    const listed = expectStatus(await admin<List<CreditGrantJson>>("GET", `/credits?tenant_id=${tenant.tenantId}`), 200);
    expect(listed.data.map((x) => [x.id, x.used_micros])).toEqual([
      [top.id, 0],
      [big.id, 1000],
      [small.id, 25],
    ]);
    const active = expectStatus(await admin<List<CreditGrantJson>>("GET", `/credits?tenant_id=${tenant.tenantId}&active=true`), 200);
    expect(active.data.map((x) => x.id)).toEqual([top.id]);
  });

  it("pay a real request's cost before it is billable, in /v1/usage and the billing export", async () => {
    const tenant = await sandbox();
    const model = "sim-llama-8b";
    const res = await post("/v1/chat/completions", { model, messages: [{ role: "user", content: "hello there" }], max_tokens: 8 }, tenant.key);
    expect(res.status).toBe(200);
    await res.text();
    // A grant created after the request does not pay for it; one created before the next one does.
    await eventually(async () => {
      await flushNow();
      const [r] = await query((db) => db.select({ cost: usageRecords.costMicros, credit: usageRecords.creditMicros }).from(usageRecords).where(eq(usageRecords.tenantId, tenant.tenantId)));
      return r;
    });
    const g = await grant(tenant.tenantId, { amount_usd: 1 });
    const res2 = await post("/v1/chat/completions", { model, messages: [{ role: "user", content: "hello again" }], max_tokens: 8 }, tenant.key);
    expect(res2.status).toBe(200);
    await res2.text();
    const records = await eventually(async () => {
      await flushNow();
      const rows = await query((db) => db.select({ cost: usageRecords.costMicros, credit: usageRecords.creditMicros, at: usageRecords.at }).from(usageRecords).where(eq(usageRecords.tenantId, tenant.tenantId)));
      return rows.length === 2 ? rows.sort((a, b) => a.at.getTime() - b.at.getTime()) : undefined;
    });
    const [before, after] = records;
    expect(before?.cost).toBeGreaterThan(0);
    expect(before?.credit).toBe(0);
    expect(after?.credit).toBe(after?.cost);
    expect(await remaining(g.id)).toBe(1_000_000 - (after?.cost ?? 0));

    const report = await (await gateway("/v1/usage?group_by=model", { key: tenant.key })).json<{ totals: { cost_micros: number; credit_micros: number; billable_micros: number } }>();
    expect(report.totals).toMatchObject({ cost_micros: (before?.cost ?? 0) + (after?.cost ?? 0), credit_micros: after?.cost, billable_micros: before?.cost });

    const period = new Date().toISOString().slice(0, 7);
    const bill = expectStatus(
      await admin<{ tenants: { total_micros: number; credit_micros: number; billable_micros: number; lines: { credit_micros: number; billable_micros: number }[] }[] }>(
        "GET",
        `/billing/export?period=${period}&tenant_id=${tenant.tenantId}`,
      ),
      200,
    );
    expect(bill.tenants[0]).toMatchObject({ total_micros: report.totals.cost_micros, credit_micros: report.totals.credit_micros, billable_micros: report.totals.billable_micros });
    expect(bill.tenants[0]?.lines[0]).toMatchObject({ credit_micros: report.totals.credit_micros, billable_micros: report.totals.billable_micros });
  });
});

describe("credit admin API", () => {
  it("is the operator's to grant and void; a tenant admin key sees only its own grants", async () => {
    const a = await sandbox();
    const b = await sandbox();
    const ga = await grant(a.tenantId, { amount_usd: 2.5, note: "launch promo" });
    expect(ga).toMatchObject({ object: "credit_grant", amount_micros: 2_500_000, remaining_micros: 2_500_000, note: "launch promo", expires_at: null });
    await grant(b.tenantId, { amount_usd: 1 });

    const denied = await admin<ErrorBody>("POST", "/credits", { tenant_id: a.tenantId, kind: "promotion", amount_usd: 5 }, a.adminKey);
    expect(denied.status).toBe(403);
    expect(denied.body.error.code).toBe("permission_denied");
    const own = expectStatus(await admin<List<CreditGrantJson>>("GET", "/credits", undefined, a.adminKey), 200);
    expect(own.data.map((g) => g.tenant_id)).toEqual([a.tenantId]);
    expect((await admin<ErrorBody>("GET", `/credits?tenant_id=${b.tenantId}`, undefined, a.adminKey)).status).toBe(404);

    const voided = expectStatus(await admin<CreditGrantJson>("POST", `/credits/${ga.id}/void`), 200);
    expect(voided).toMatchObject({ remaining_micros: 0, used_micros: 2_500_000 });
    const audit = expectStatus(await admin<List<{ action: string }>>("GET", `/audit?target_id=${ga.id}`), 200);
    expect(audit.data.map((e) => e.action).sort()).toEqual(["credit.grant", "credit.void"]);
  });

  it("rejects bad grants with a 400 naming the field, and unknown tenants with 404", async () => {
    const a = await sandbox();
    const cases: [Record<string, unknown>, string][] = [
      [{ tenant_id: a.tenantId, kind: "promotion" }, "amount_micros"],
      [{ tenant_id: a.tenantId, kind: "promotion", amount_usd: 1, amount_micros: 5 }, "amount_micros"],
      [{ tenant_id: a.tenantId, kind: "gift", amount_usd: 1 }, "kind"],
      [{ tenant_id: a.tenantId, kind: "promotion", amount_usd: -1 }, "amount_usd"],
      [{ tenant_id: a.tenantId, kind: "promotion", amount_usd: 1, expires_at: "2020-01-01T00:00:00Z" }, "expires_at"],
    ];
    for (const [body, param] of cases) {
      const res = await admin<ErrorBody>("POST", "/credits", body);
      expect({ status: res.status, param: res.body.error.param }).toEqual({ status: 400, param });
    }
    expect((await admin<ErrorBody>("POST", "/credits", { tenant_id: "ten_nope", kind: "promotion", amount_usd: 1 })).status).toBe(404);
  });
});
