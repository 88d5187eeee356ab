/**
 * The billable usage of a month per tenant, as invoice lines per model (`GET /admin/billing/export`,
 * operator only). Read from the hourly rollups, so each line equals the sum of its usage records; credits
 * already drawn by the flush are shown per line and only the rest is billable; a
 * tenant whose `billed_through` reaches the month's end is marked billed.
 */
import { and, asc, eq, gte, lt, sql } from "drizzle-orm";
import { Hono } from "hono";
import { countEvent, flushCounters } from "../platform/metrics.ts";
import { z } from "zod";
import { tenants, usageHourly } from "../../../schema/tables/index.ts";
import type { AdminEnv } from "../admin/auth.ts";
import { readQuery, requireOperator } from "../admin/http.ts";
import { billingCustomerRoutes } from "./customers-admin.ts";

const query = z.strictObject({
  period: z.string().regex(/^\d{4}-(0[1-9]|1[0-2])$/, "must be a month, YYYY-MM"),
  tenant_id: z.string().min(1).max(200).optional(),
  format: z.enum(["json", "csv"]).default("json"),
});

/** One invoice line: a model's usage by a tenant in the month. */
export interface InvoiceLine {
  model: string;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  /** Seconds of audio transcribed or translated (ms precision). */
  audio_seconds: number;
  /** Cost of the usage. */
  amount_micros: number;
  amount_usd: number;
  /** Part of the cost paid from credits (free tier, promotions): not invoiced. */
  credit_micros: number;
  /** amount − credits: what the invoice item charges. */
  billable_micros: number;
  billable_usd: number;
  description: string;
}

/** A tenant's billable usage in the month. */
export interface TenantBill {
  tenant_id: string;
  name: string;
  stripe_customer_id: string | null;
  billed: boolean;
  lines: InvoiceLine[];
  total_micros: number;
  total_usd: number;
  credit_micros: number;
  billable_micros: number;
  billable_usd: number;
}

function csvCell(value: string | number | boolean | null): string {
  const text = value === null ? "" : String(value);
  return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** The billing routes, mounted at `/admin/billing`: the export, and each tenant's billing state (customers-admin.ts). */
export const billingRoutes = new Hono<AdminEnv>().route("/customers", billingCustomerRoutes).get("/export", async (c) => {
  requireOperator(c.get("actor"), "export billing");
  const q = readQuery(c, query);
  const [year, month] = q.period.split("-").map(Number) as [number, number];
  const start = new Date(Date.UTC(year, month - 1, 1));
  const end = new Date(Date.UTC(year, month, 1));
  const deps = c.get("deps");
  // Counted for /admin/metrics (billing exports by result), flushed after the answer.
  const counted = (result: "ok" | "failed") => {
    countEvent("switchyard_billing_exports_total", { result });
    deps.waitUntil(flushCounters(deps.redis, deps.settings.redisPrefix));
  };
  const rows = await deps.db((db) =>
    db
      .select({
        tenantId: usageHourly.tenantId,
        name: tenants.name,
        customer: tenants.stripeCustomerId,
        billedThrough: tenants.billedThrough,
        model: usageHourly.model,
        requests: sql<number>`sum(${usageHourly.requests})::bigint`.mapWith(Number),
        prompt: sql<number>`sum(${usageHourly.promptTokens})::bigint`.mapWith(Number),
        completion: sql<number>`sum(${usageHourly.completionTokens})::bigint`.mapWith(Number),
        audioMs: sql<number>`sum(${usageHourly.audioMs})::bigint`.mapWith(Number),
        cost: sql<number>`sum(${usageHourly.costMicros})::bigint`.mapWith(Number),
        credit: sql<number>`sum(${usageHourly.creditMicros})::bigint`.mapWith(Number),
      })
      .from(usageHourly)
      .innerJoin(tenants, eq(tenants.id, usageHourly.tenantId))
      .where(and(gte(usageHourly.hour, start), lt(usageHourly.hour, end), q.tenant_id ? eq(usageHourly.tenantId, q.tenant_id) : undefined))
      .groupBy(usageHourly.tenantId, tenants.name, tenants.stripeCustomerId, tenants.billedThrough, usageHourly.model)
      .orderBy(asc(usageHourly.tenantId), asc(usageHourly.model)),
  ).catch((err: unknown) => {
    counted("failed");
    throw err;
  });
  counted("ok");
  const bills = new Map<string, TenantBill>();
  for (const r of rows) {
    const bill = bills.get(r.tenantId) ?? {
      tenant_id: r.tenantId,
      name: r.name,
      stripe_customer_id: r.customer,
      billed: r.billedThrough !== null && r.billedThrough.getTime() >= end.getTime(),
      lines: [],
      total_micros: 0,
      total_usd: 0,
      credit_micros: 0,
      billable_micros: 0,
      billable_usd: 0,
    };
    bill.lines.push({
      model: r.model,
      requests: r.requests,
      prompt_tokens: r.prompt,
      completion_tokens: r.completion,
      audio_seconds: r.audioMs / 1000,
      amount_micros: r.cost,
      amount_usd: r.cost / 1_000_000,
      credit_micros: r.credit,
      billable_micros: r.cost - r.credit,
      billable_usd: (r.cost - r.credit) / 1_000_000,
      description: `${r.model}: ${r.prompt} prompt + ${r.completion} completion tokens${r.audioMs > 0 ? `, ${r.audioMs / 1000} s of audio` : ""}, ${r.requests} requests (${q.period})`,
    });
    bill.total_micros += r.cost;
    bill.total_usd = bill.total_micros / 1_000_000;
    bill.credit_micros += r.credit;
    bill.billable_micros = bill.total_micros - bill.credit_micros;
    bill.billable_usd = bill.billable_micros / 1_000_000;
    bills.set(r.tenantId, bill);
  }
  if (q.format === "csv") {
    const header = "tenant_id,stripe_customer_id,billed,model,requests,prompt_tokens,completion_tokens,audio_seconds,amount_micros,amount_usd,credit_micros,billable_micros,billable_usd,description";
    const lines = [...bills.values()].flatMap((b) =>
      b.lines.map((l) =>
        [b.tenant_id, b.stripe_customer_id, b.billed, l.model, l.requests, l.prompt_tokens, l.completion_tokens, l.audio_seconds, l.amount_micros, l.amount_usd, l.credit_micros, l.billable_micros, l.billable_usd, l.description].map(csvCell).join(","),
      ),
    );
    return c.body(`${[header, ...lines].join("\n")}\n`, 200, {
      "content-type": "text/csv; charset=utf-8",
      "content-disposition": `attachment; filename="billing-${q.period}.csv"`,
    });
  }
  return c.json({ object: "billing.export", period: q.period, start: start.toISOString(), end: end.toISOString(), currency: "usd", tenants: [...bills.values()] });
});
