import { and, gte, lt, sql } from "drizzle-orm";
import { beforeAll, describe, expect, it } from "vitest";
import { usageRecords } from "../../schema/tables/index.ts";
import type { StatsJson } from "../../worker/src/usage/stats.ts";
import { admin, expectStatus, sandbox, type ErrorBody, type Sandbox } from "./admin-helpers.ts";
import { query } from "./helpers.ts";
import { percentileCont, seedUsage } from "./usage-seed.ts";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

// A random past day (2001–2020) at 10:00 UTC, so this run's records have their window to themselves
// (the operator-wide test checks against the database anyway).
const day0 = Date.UTC(2001, 0, 1) + Math.floor(Math.random() * 7000) * DAY;
const h0 = day0 + 10 * HOUR;
const at = (hour: number, minute: number) => new Date(h0 + hour * HOUR + minute * 60_000);
const iso = (t: number) => new Date(t).toISOString().replace(/\.000Z$/, "Z");

let a: Sandbox;
let b: Sandbox;

beforeAll(async () => {
  [a, b] = await Promise.all([sandbox(), sandbox()]);
  await seedUsage(a, [
    // Hour 0: three completed (two streamed), one engine error, one refusal at admission.
    { at: at(0, 10), streamed: true, ttftMs: 100, latencyMs: 1000 },
    { at: at(0, 20), streamed: true, ttftMs: 200, latencyMs: 2000 },
    { at: at(0, 30), streamed: false, ttftMs: 50, latencyMs: 500 },
    { at: at(0, 40), status: "error", httpStatus: 502, latencyMs: 3000 },
    { at: at(0, 50), status: "rejected", httpStatus: 429, latencyMs: 5 },
    // Hour 1: nothing. Hour 2: one completed stream, one cancelled stream, one refusal with a 503.
    { at: at(2, 5), streamed: true, ttftMs: 300, latencyMs: 4000 },
    { at: at(2, 10), status: "cancelled", httpStatus: 200, streamed: true, ttftMs: 10, latencyMs: 100 },
    { at: at(2, 15), status: "rejected", httpStatus: 503, latencyMs: 7 },
  ]);
  // Another tenant in the same hours: a slow error it must never lend to tenant a.
  await seedUsage(b, [
    { at: at(0, 15), status: "error", httpStatus: 500, latencyMs: 9000 },
    { at: at(2, 20), streamed: true, ttftMs: 900, latencyMs: 9000 },
  ]);
});

const window = `start=${iso(h0)}&end=${iso(h0 + 3 * HOUR)}`;

describe("GET /admin/usage/stats", () => {
  it("gives requests, errors, error rate and p95 latency and TTFT per hour, empty hours included, and for the window", async () => {
    const body = expectStatus(await admin<StatsJson>("GET", `/usage/stats?${window}&bucket=hour&tenant_id=${a.tenantId}`), 200);
    expect(body).toMatchObject({ object: "usage.stats", tenant_id: a.tenantId, start: new Date(h0).toISOString(), end: new Date(h0 + 3 * HOUR).toISOString(), bucket: "hour" });
    expect(body.data).toEqual([
      // Latency over the completed 500, 1000, 2000 ms: 1000 + 0.9 × 1000; TTFT over the two streams: 100 + 0.95 × 100.
      { period_start: iso(h0), requests: 5, errors: 1, error_rate: 0.2, p95_latency_ms: 1900, p95_ttft_ms: 195 },
      { period_start: iso(h0 + HOUR), requests: 0, errors: 0, error_rate: null, p95_latency_ms: null, p95_ttft_ms: null },
      // The 503 refusal is an error; the cancelled stream is neither an error nor in the percentiles.
      { period_start: iso(h0 + 2 * HOUR), requests: 3, errors: 1, error_rate: 1 / 3, p95_latency_ms: 4000, p95_ttft_ms: 300 },
    ]);
    // Over 500, 1000, 2000, 4000: 2000 + 0.85 × 2000; TTFT over 100, 200, 300: 200 + 0.9 × 100.
    expect(body.totals).toEqual({ requests: 8, errors: 2, error_rate: 0.25, p95_latency_ms: 3700, p95_ttft_ms: 290 });
  });

  it("cuts day buckets at UTC midnight", async () => {
    const body = expectStatus(await admin<StatsJson>("GET", `/usage/stats?start=${iso(day0)}&end=${iso(day0 + 2 * DAY)}&bucket=day&tenant_id=${a.tenantId}`), 200);
    expect(body.data.map((r) => [r.period_start, r.requests, r.errors])).toEqual([
      [iso(day0), 8, 2],
      [iso(day0 + DAY), 0, 0],
    ]);
    expect(body.data[0]).toMatchObject({ p95_latency_ms: 3700, p95_ttft_ms: 290 });
  });

  it("gives the operator every tenant when no tenant is asked for, equal to the records", async () => {
    const body = expectStatus(await admin<StatsJson>("GET", `/usage/stats?${window}&bucket=hour`), 200);
    expect(body.tenant_id).toBeNull();
    const rows = await query((db) =>
      db
        .select()
        .from(usageRecords)
        .where(and(gte(usageRecords.at, new Date(h0)), lt(usageRecords.at, new Date(h0 + 3 * HOUR)))),
    );
    const ok = rows.filter((r) => r.status === "ok");
    expect(body.totals).toEqual({
      requests: rows.length,
      errors: rows.filter((r) => r.status === "error" || r.httpStatus >= 500).length,
      error_rate: rows.filter((r) => r.status === "error" || r.httpStatus >= 500).length / rows.length,
      p95_latency_ms: percentileCont(ok.map((r) => r.latencyMs), 0.95),
      p95_ttft_ms: percentileCont(ok.filter((r) => r.streamed && r.ttftMs !== null).map((r) => r.ttftMs ?? 0), 0.95),
    });
    expect(body.totals.requests).toBeGreaterThanOrEqual(10);
  });

  it("shows a tenant admin key its own tenant only, and answers 404 for another tenant's id", async () => {
    const own = expectStatus(await admin<StatsJson>("GET", `/usage/stats?${window}&bucket=hour`, undefined, a.adminKey), 200);
    expect(own.tenant_id).toBe(a.tenantId);
    expect(own.totals).toMatchObject({ requests: 8, errors: 2, p95_latency_ms: 3700 });
    const named = expectStatus(await admin<StatsJson>("GET", `/usage/stats?${window}&bucket=hour&tenant_id=${a.tenantId}`, undefined, a.adminKey), 200);
    expect(named.totals).toEqual(own.totals);
    const theirs = expectStatus(await admin<StatsJson>("GET", `/usage/stats?${window}&bucket=hour`, undefined, b.adminKey), 200);
    expect(theirs.totals).toEqual({ requests: 2, errors: 1, error_rate: 0.5, p95_latency_ms: 9000, p95_ttft_ms: 900 });
    const sneaky = await admin<ErrorBody>("GET", `/usage/stats?${window}&tenant_id=${a.tenantId}`, undefined, b.adminKey);
    expect(sneaky.status).toBe(404);
    expect(sneaky.body.error.code).toBe("not_found");
  });

  it("answers 400 naming the parameter for bad input and for windows longer than the bucket allows", async () => {
    for (const [qs, param] of [
      ["start=yesterday", "start"],
      [`start=${iso(h0 + HOUR)}&end=${iso(h0)}`, "end"],
      ["bucket=week", "bucket"],
      [`bucket=hour&start=${iso(day0)}&end=${iso(day0 + 32 * DAY)}`, "start"],
      [`bucket=day&start=${iso(day0)}&end=${iso(day0 + 93 * DAY)}`, "start"],
      ["group_by=model", "group_by"],
    ] as const) {
      const res = await admin<ErrorBody>("GET", `/usage/stats?${qs}`);
      expect({ qs, status: res.status, code: res.body.error.code, param: res.body.error.param }).toEqual({ qs, status: 400, code: "invalid_value", param });
    }
    // 31 days by hour and 92 by day are within bounds.
    expectStatus(await admin("GET", `/usage/stats?bucket=hour&start=${iso(day0)}&end=${iso(day0 + 31 * DAY)}&tenant_id=${a.tenantId}`), 200);
    expectStatus(await admin("GET", `/usage/stats?bucket=day&start=${iso(day0)}&end=${iso(day0 + 92 * DAY)}&tenant_id=${a.tenantId}`), 200);
  });

  it("reads usage_records through an index, for one tenant and for all", async () => {
    const between = `at >= '${new Date(h0).toISOString()}' and at < '${new Date(h0 + 3 * HOUR).toISOString()}'`;
    // Sequential scans off: on a small table the planner would rightly prefer one; the point is that an index can serve the query.
    const plan = (where: string) =>
      query(async (db) => {
        await db.execute(sql`set enable_seqscan = off`);
        const { rows } = await db.execute(sql.raw(`explain select count(*) from usage_records where ${where}`));
        return rows.map((r) => String(Object.values(r)[0])).join("\n");
      });
    // For one tenant either index serves (the planner picks by the window's selectivity).
    const oneTenant = await plan(`tenant_id = '${a.tenantId}' and ${between}`);
    expect(oneTenant).toMatch(/usage_records_(tenant_)?at_idx/);
    expect(oneTenant).not.toMatch(/Seq Scan/);
    const all = await plan(between);
    expect(all).toMatch(/usage_records_at_idx/);
    expect(all).not.toMatch(/Seq Scan/);
  });
});
