import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { tenants } from "../../schema/tables/index.ts";
import type { BillingCustomerJson } from "../../worker/src/billing/customers-admin.ts";
import { admin, expectStatus, sandbox, type ErrorBody, type List } from "./admin-helpers.ts";
import { query } from "./helpers.ts";

describe("GET /admin/billing/customers", () => {
  it("shows a tenant's Stripe customer, status, plan, billed-through and last event times", async () => {
    const box = await sandbox();
    const customer = `cus_${crypto.randomUUID().replaceAll("-", "").slice(0, 14)}`;
    expectStatus(await admin("PATCH", `/tenants/${box.tenantId}`, { stripe_customer_id: customer, plan: "team" }), 200);
    await query((db) =>
      db
        .update(tenants)
        .set({ paymentEventAt: new Date("2026-11-02T08:30:00Z"), subscriptionEventAt: new Date("2026-11-01T07:00:00Z"), billedThrough: new Date("2026-11-01T00:00:00Z") })
        .where(eq(tenants.id, box.tenantId)),
    );
    const list = expectStatus(await admin<List<BillingCustomerJson>>("GET", `/billing/customers?tenant_id=${box.tenantId}`), 200);
    expect(list.data).toEqual([
      {
        object: "billing.customer",
        tenant_id: box.tenantId,
        name: expect.any(String) as string,
        status: "active",
        plan: "team",
        stripe_customer_id: customer,
        billed_through: "2026-11-01T00:00:00.000Z",
        payment_event_at: "2026-11-02T08:30:00.000Z",
        subscription_event_at: "2026-11-01T07:00:00.000Z",
      },
    ]);
    const linked = expectStatus(await admin<List<BillingCustomerJson>>("GET", "/billing/customers?linked=true&limit=200"), 200);
    expect(linked.data.every((c) => c.stripe_customer_id !== null)).toBe(true);
  });

  it("shows a tenant admin key its own tenant only, and 404 for another's", async () => {
    const [mine, theirs] = await Promise.all([sandbox(), sandbox()]);
    const own = expectStatus(await admin<List<BillingCustomerJson>>("GET", "/billing/customers", undefined, mine.adminKey), 200);
    expect(own.data.map((c) => c.tenant_id)).toEqual([mine.tenantId]);
    const other = await admin<ErrorBody>("GET", `/billing/customers?tenant_id=${theirs.tenantId}`, undefined, mine.adminKey);
    expect(other.status).toBe(404);
    expect(other.body.error.code).toBe("not_found");
  });
});
