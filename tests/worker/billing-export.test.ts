import { eq, sql } from "drizzle-orm";
import { describe, expect, inject, it } from "vitest";
import { usageRecords } from "../../schema/tables/index.ts";
import { admin, sandbox } from "./admin-helpers.ts";
import { flushNow, gateway, post, query } from "./helpers.ts";

interface Export {
  period: string;
  tenants: { tenant_id: string; billed: boolean; total_micros: number; lines: { model: string; requests: number; prompt_tokens: number; completion_tokens: number; amount_micros: number }[] }[];
}

describe("billable usage export", () => {
  it("lists a month's usage per tenant as invoice lines per model that equal the usage records", async () => {
    const box = await sandbox();
    for (let i = 0; i < 3; i++) await (await post("/v1/chat/completions", { model: "sim-llama-8b", messages: [{ role: "user", content: `hello ${i}` }], max_tokens: 4 }, box.key)).arrayBuffer();
    await (await post("/v1/embeddings", { model: "sim-embed", input: ["a", "b"] }, box.key)).arrayBuffer();
    await flushNow();

    const now = new Date();
    const period = `${now.getUTCFullYear()}-${String(now.getUTCMonth() + 1).padStart(2, "0")}`;
    const res = await admin<Export>("GET", `/billing/export?period=${period}&tenant_id=${box.tenantId}`);
    expect(res.status).toBe(200);
    const bill = res.body.tenants.find((t) => t.tenant_id === box.tenantId);
    expect(bill?.billed).toBe(false);
    expect(bill?.lines.map((l) => [l.model, l.requests])).toEqual([
      ["sim-embed", 1],
      ["sim-llama-8b", 3],
    ]);
    const [records] = await query((db) =>
      db
        .select({ cost: sql<number>`sum(cost_micros)::bigint`.mapWith(Number), completion: sql<number>`sum(completion_tokens)::int` })
        .from(usageRecords)
        .where(eq(usageRecords.tenantId, box.tenantId)),
    );
    expect(bill?.total_micros).toBe(records?.cost);
    expect(bill?.lines.reduce((n, l) => n + l.completion_tokens, 0)).toBe(records?.completion);

    const csv = await gateway(`/admin/billing/export?period=${period}&tenant_id=${box.tenantId}&format=csv`, { key: null, headers: { authorization: `Bearer ${inject("adminToken")}` } });
    expect(csv.headers.get("content-type")).toContain("text/csv");
    const lines = (await csv.text()).trim().split("\n");
    expect(lines[0]).toBe("tenant_id,stripe_customer_id,billed,model,requests,prompt_tokens,completion_tokens,audio_seconds,amount_micros,amount_usd,credit_micros,billable_micros,billable_usd,description");
    expect(lines).toHaveLength(3);
  });

  it("is the operator's only, and names a bad period", async () => {
    const box = await sandbox();
    const refused = await admin("GET", "/billing/export?period=2026-11", undefined, box.adminKey);
    expect(refused.status).toBe(403);
    const bad = await admin<{ error: { param: string } }>("GET", "/billing/export?period=2026-13");
    expect(bad.status).toBe(400);
    expect(bad.body.error.param).toBe("period");
  });
});
