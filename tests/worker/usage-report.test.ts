import { eq, sql } from "drizzle-orm";
import { beforeAll, describe, expect, it } from "vitest";
import { usageRecords } from "../../schema/tables/index.ts";
import { admin, expectStatus, sandbox, type ErrorBody, type Sandbox } from "./admin-helpers.ts";
import { eventually, flushNow, gateway, post, query } from "./helpers.ts";

interface Totals {
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  cached_prompt_tokens: number;
  total_tokens: number;
  cost_micros: number;
  cost_usd: number;
  credit_micros: number;
  billable_micros: number;
}
interface Report {
  object: string;
  tenant_id: string | null;
  start: string;
  end: string;
  bucket: string;
  data: (Totals & { period_start: string; model?: string; tenant_id?: string })[];
  totals: Totals;
}

const CHATS = 3;
const EMBEDDINGS = 2;
let tenant: Sandbox;

/** The tenant's usage_records summed in SQL, the ground truth a report must equal. */
async function recorded(tenantId: string) {
  const [row] = await query((db) =>
    db
      .select({
        requests: sql<number>`count(*)::int`,
        prompt_tokens: sql<number>`coalesce(sum(prompt_tokens), 0)::int`,
        completion_tokens: sql<number>`coalesce(sum(completion_tokens), 0)::int`,
        cached_prompt_tokens: sql<number>`coalesce(sum(cached_prompt_tokens), 0)::int`,
        audio_ms: sql<number>`coalesce(sum(audio_ms), 0)::int`,
        cost_micros: sql<number>`coalesce(sum(cost_micros), 0)::int`,
        credit_micros: sql<number>`coalesce(sum(credit_micros), 0)::int`,
      })
      .from(usageRecords)
      .where(eq(usageRecords.tenantId, tenantId)),
  );
  if (!row) throw new Error("no totals");
  const { audio_ms, ...sums } = row;
  return { ...sums, audio_seconds: audio_ms / 1000, total_tokens: row.prompt_tokens + row.completion_tokens, cost_usd: row.cost_micros / 1e6, billable_micros: row.cost_micros - row.credit_micros };
}

async function usage(path: string, key: string): Promise<{ status: number; body: Report }> {
  const res = await gateway(path, { key });
  return { status: res.status, body: await res.json<Report>() };
}

beforeAll(async () => {
  tenant = await sandbox();
  const messages = [{ role: "user", content: "count to three" }];
  for (let i = 0; i < CHATS; i++) {
    const res = await post("/v1/chat/completions", { model: "sim-llama-8b", messages, max_tokens: 4 + i }, tenant.key);
    expect(res.status).toBe(200);
    await res.text();
  }
  for (let i = 0; i < EMBEDDINGS; i++) {
    const res = await post("/v1/embeddings", { model: "sim-embed", input: `text number ${i}` }, tenant.key);
    expect(res.status).toBe(200);
    await res.text();
  }
  await eventually(async () => {
    await flushNow();
    return (await recorded(tenant.tenantId)).requests === CHATS + EMBEDDINGS ? true : undefined;
  });
});

describe("GET /v1/usage", () => {
  it("reports the caller's tenant with totals equal to its usage records, to the token", async () => {
    const truth = await recorded(tenant.tenantId);
    expect(truth.prompt_tokens).toBeGreaterThan(0);
    const { status, body } = await usage("/v1/usage", tenant.key);
    expect(status).toBe(200);
    expect(body).toMatchObject({ object: "usage.report", tenant_id: tenant.tenantId, bucket: "day" });
    expect(body.totals).toEqual(truth);
    expect(Date.parse(body.end) - Date.parse(body.start)).toBeGreaterThanOrEqual(7 * 86_400_000);
    expect(body.data.every((r) => /^\d{4}-\d\d-\d\dT00:00:00Z$/.test(r.period_start))).toBe(true);
  });

  it("groups by model, one row per model per bucket", async () => {
    const { status, body } = await usage("/v1/usage?bucket=hour&group_by=model", tenant.key);
    expect(status).toBe(200);
    const byModel = new Map<string, number>();
    for (const r of body.data) byModel.set(r.model ?? "?", (byModel.get(r.model ?? "?") ?? 0) + r.requests);
    expect(Object.fromEntries(byModel)).toEqual({ "sim-embed": EMBEDDINGS, "sim-llama-8b": CHATS });
    expect(body.totals).toEqual(await recorded(tenant.tenantId));
  });

  it("answers CSV with a header row, the same totals and a download file name", async () => {
    const day = (offset: number) => new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10);
    const res = await gateway(`/v1/usage?format=csv&group_by=model,key&start=${day(-1)}&end=${day(2)}`, { key: tenant.key });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/csv");
    expect(res.headers.get("content-disposition")).toBe(`attachment; filename="usage-${tenant.tenantId}-${day(-1)}T00Z-${day(2)}T00Z.csv"`);
    const [header, ...lines] = (await res.text()).trim().split("\r\n");
    const columns = (header ?? "").split(",");
    expect(columns).toEqual(["period_start", "model", "api_key_id", "requests", "prompt_tokens", "completion_tokens", "cached_prompt_tokens", "total_tokens", "audio_seconds", "cost_usd", "cost_micros", "credit_micros", "billable_micros"]);
    const sum = (col: string) => lines.reduce((n, l) => n + Number(l.split(",")[columns.indexOf(col)]), 0);
    const truth = await recorded(tenant.tenantId);
    expect({ requests: sum("requests"), total_tokens: sum("total_tokens"), cost_micros: sum("cost_micros") }).toEqual({
      requests: truth.requests,
      total_tokens: truth.total_tokens,
      cost_micros: truth.cost_micros,
    });
  });

  it("never shows another tenant's usage, and refuses a tenant_id parameter", async () => {
    const other = await sandbox();
    const { status, body } = await usage("/v1/usage?group_by=key", other.key);
    expect(status).toBe(200);
    expect(body.tenant_id).toBe(other.tenantId);
    expect(body.data).toEqual([]);
    expect(body.totals.requests).toBe(0);
    const sneaky = await gateway(`/v1/usage?tenant_id=${tenant.tenantId}`, { key: other.key });
    expect(sneaky.status).toBe(400);
    expect((await sneaky.json<ErrorBody>()).error).toMatchObject({ code: "invalid_value", param: "tenant_id" });
  });

  it("answers 400 naming the parameter for a bad start, a reversed window, a too-long window or an unknown group", async () => {
    for (const [qs, param] of [
      ["start=yesterday", "start"],
      ["start=2026-02-01&end=2026-01-01", "end"],
      ["start=2024-01-01&end=2026-01-01", "start"],
      ["group_by=tenant", "group_by"],
      ["bucket=week", "bucket"],
    ] as const) {
      const res = await gateway(`/v1/usage?${qs}`, { key: tenant.key });
      const body = await res.json<ErrorBody>();
      expect({ qs, status: res.status, code: body.error.code, param: body.error.param }).toEqual({ qs, status: 400, code: "invalid_value", param });
    }
  });
});

describe("GET /admin/usage", () => {
  it("gives the operator the same totals for a tenant, and every tenant grouped by tenant", async () => {
    const truth = await recorded(tenant.tenantId);
    const one = expectStatus(await admin<Report>("GET", `/usage?tenant_id=${tenant.tenantId}`), 200);
    expect(one.tenant_id).toBe(tenant.tenantId);
    expect(one.totals).toEqual(truth);
    const all = expectStatus(await admin<Report>("GET", "/usage?group_by=tenant"), 200);
    expect(all.tenant_id).toBeNull();
    const mine = all.data.filter((r) => r.tenant_id === tenant.tenantId);
    expect(mine.reduce((n, r) => n + r.total_tokens, 0)).toBe(truth.total_tokens);
  });

  it("shows a tenant admin key its own tenant and answers 404 for another", async () => {
    const own = expectStatus(await admin<Report>("GET", "/usage", undefined, tenant.adminKey), 200);
    expect(own.tenant_id).toBe(tenant.tenantId);
    expect(own.totals.requests).toBe(CHATS + EMBEDDINGS);
    const other = await sandbox();
    const res = await admin<ErrorBody>("GET", `/usage?tenant_id=${tenant.tenantId}`, undefined, other.adminKey);
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe("not_found");
  });
});
