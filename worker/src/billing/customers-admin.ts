/**
 * `GET /admin/billing/customers`: each tenant's billing state as the Stripe webhooks left it
 * (billing/webhook.ts): its customer, status, plan, the end of the last paid period and when the last
 * payment and subscription events were applied. The operator sees every tenant, a tenant admin its own.
 */
import { and, asc, eq, gt, isNotNull, type SQL } from "drizzle-orm";
import { Hono } from "hono";
import { z } from "zod";
import { tenants } from "../../../schema/tables/index.ts";
import type { AdminEnv } from "../admin/auth.ts";
import { canSee, notFound, readQuery, reading } from "../admin/http.ts";
import { decodeCursor, page, pageQuery } from "../admin/pagination.ts";

/** A tenant's billing state. */
export interface BillingCustomerJson {
  object: "billing.customer";
  tenant_id: string;
  name: string;
  status: "active" | "suspended";
  plan: string;
  /** The Stripe customer whose events drive status and plan (null: not linked to Stripe). */
  stripe_customer_id: string | null;
  /** End of the period of the last paid invoice: usage up to here is billed. */
  billed_through: string | null;
  /** Stripe's `created` of the last payment event applied to the status. */
  payment_event_at: string | null;
  /** Stripe's `created` of the last subscription event applied to the plan. */
  subscription_event_at: string | null;
}

function iso(date: Date | null): string | null {
  return date === null ? null : date.toISOString();
}

function customerJson(row: typeof tenants.$inferSelect): BillingCustomerJson {
  return {
    object: "billing.customer",
    tenant_id: row.id,
    name: row.name,
    status: row.status,
    plan: row.plan,
    stripe_customer_id: row.stripeCustomerId,
    billed_through: iso(row.billedThrough),
    payment_event_at: iso(row.paymentEventAt),
    subscription_event_at: iso(row.subscriptionEventAt),
  };
}

const listQuery = z.object({
  ...pageQuery,
  tenant_id: z.string().min(1).max(200).optional(),
  /** Only tenants linked to a Stripe customer. */
  linked: z.enum(["true", "false"]).optional(),
});

/** The billing customer routes, mounted at `/admin/billing/customers`. */
export const billingCustomerRoutes = new Hono<AdminEnv>().get("/", async (c) => {
  const q = readQuery(c, listQuery);
  const actor = c.get("actor");
  if (q.tenant_id !== undefined && !canSee(actor, q.tenant_id)) throw notFound("tenant", q.tenant_id);
  const tenantId = q.tenant_id ?? (actor.kind === "tenant" ? actor.tenantId : undefined);
  const after = decodeCursor(q.cursor, ["id"]);
  const where: (SQL | undefined)[] = [
    after ? gt(tenants.id, after.id) : undefined,
    tenantId === undefined ? undefined : eq(tenants.id, tenantId),
    q.linked === "true" ? isNotNull(tenants.stripeCustomerId) : undefined,
  ];
  const rows = await reading(c, (db) => db.select().from(tenants).where(and(...where)).orderBy(asc(tenants.id)).limit(q.limit + 1));
  return c.json(page(rows, q.limit, customerJson, (r) => ({ id: r.id })));
});
