import "../support/provided-context.ts";
import { env } from "cloudflare:test";
import { exports } from "cloudflare:workers";
import { and, eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { auditLogs, stripeEvents, tenants } from "../../schema/tables/index.ts";
import { createEnvironment, createTenant, newId } from "../../worker/src/admin/store.ts";
import { admin, expectStatus, modelsStatusBecomes, type ErrorBody } from "./admin-helpers.ts";
import { createApiKey, query } from "./helpers.ts";

function hex(bytes: ArrayBuffer): string {
  return [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** hex(HMAC-SHA256(secret, `${t}.${body}`)), as Stripe signs. */
async function sign(secret: string, t: number, body: string): Promise<string> {
  const enc = new TextEncoder();
  const key = await crypto.subtle.importKey("raw", enc.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return hex(await crypto.subtle.sign("HMAC", key, enc.encode(`${t}.${body}`)));
}

const now = (): number => Math.floor(Date.now() / 1000);

/** POSTs a raw body to /webhooks/stripe with `signature` as the Stripe-Signature header (none when null). */
async function deliverRaw(body: string, signature: string | null): Promise<{ status: number; body: Record<string, unknown> }> {
  const headers = new Headers({ "content-type": "application/json" });
  if (signature !== null) headers.set("stripe-signature", signature);
  const res = await exports.default.fetch(new Request("http://gateway.test/webhooks/stripe", { method: "POST", headers, body }));
  return { status: res.status, body: await res.json<Record<string, unknown>>() };
}

/** A Stripe event envelope. */
function event(type: string, object: Record<string, unknown>, created = now(), id = newId("evt")): string {
  return JSON.stringify({ id, object: "event", api_version: "2025-03-31.basil", created, livemode: false, pending_webhooks: 1, request: null, type, data: { object } });
}

/** Delivers an event signed with the binding's secret, as Stripe does. */
async function deliver(body: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const t = now();
  return deliverRaw(body, `t=${t},v1=${await sign(env.STRIPE_WEBHOOK_SECRET, t, body)}`);
}

/** A tenant linked to a fresh Stripe customer, with an environment and a chat key. */
async function billedTenant(): Promise<{ tenantId: string; customer: string; key: string }> {
  const customer = `cus_${crypto.randomUUID().replaceAll("-", "").slice(0, 14)}`;
  return query(async (db) => {
    const tenant = await createTenant(db, "test", { name: `stripe-${customer}`, stripeCustomerId: customer });
    const environment = await createEnvironment(db, "test", { tenantId: tenant.id, name: "prod" });
    const key = await createApiKey(db, "test", { tenantId: tenant.id, environmentId: environment.id, name: "app" });
    return { tenantId: tenant.id, customer, key: key.key };
  });
}

async function tenantRow(id: string): Promise<typeof tenants.$inferSelect> {
  const [row] = await query((db) => db.select().from(tenants).where(eq(tenants.id, id)));
  if (!row) throw new Error(`tenant ${id} missing`);
  return row;
}

async function stripeAudits(tenantId: string): Promise<(typeof auditLogs.$inferSelect)[]> {
  return query((db) => db.select().from(auditLogs).where(and(eq(auditLogs.targetId, tenantId), eq(auditLogs.actor, "stripe"))));
}

const paymentIntent = (customer: string): Record<string, unknown> => ({ id: newId("pi"), object: "payment_intent", amount: 2000, currency: "usd", customer, status: "succeeded" });

describe("POST /webhooks/stripe signature", () => {
  it("accepts a correctly signed event and answers 200", async () => {
    const res = await deliver(event("customer.created", { id: "cus_x" }));
    expect(res).toEqual({ status: 200, body: { received: true, outcome: "ignored" } });
  });

  it("accepts a header with several v1 signatures when any one matches (secret rolling)", async () => {
    const body = event("customer.created", { id: "cus_x" });
    const t = now();
    const good = await sign(env.STRIPE_WEBHOOK_SECRET, t, body);
    const old = await sign("whsec_old_secret", t, body);
    const res = await deliverRaw(body, `t=${t},v1=${old},v1=${good},v0=${"0".repeat(64)}`);
    expect(res.status).toBe(200);
  });

  it("answers 400 invalid_signature for a wrong signature, a stale timestamp, a missing header or a non-hex v1", async () => {
    const body = event("customer.created", { id: "cus_x" });
    const t = now();
    const stale = t - 301;
    const cases = [
      `t=${t},v1=${await sign("whsec_wrong", t, body)}`,
      `t=${stale},v1=${await sign(env.STRIPE_WEBHOOK_SECRET, stale, body)}`,
      null,
      `t=${t},v1=not-hex`,
      `t=${t},v0=${await sign(env.STRIPE_WEBHOOK_SECRET, t, body)}`,
      `v1=${await sign(env.STRIPE_WEBHOOK_SECRET, t, body)}`,
    ];
    for (const signature of cases) {
      const res = await deliverRaw(body, signature);
      expect({ signature, status: res.status, code: (res.body as unknown as ErrorBody).error.code }).toEqual({ signature, status: 400, code: "invalid_signature" });
    }
  });

  it("answers 400 when the signed body is modified or is not JSON", async () => {
    const body = event("customer.created", { id: "cus_x" });
    const t = now();
    const tampered = await deliverRaw(body.replace("cus_x", "cus_y"), `t=${t},v1=${await sign(env.STRIPE_WEBHOOK_SECRET, t, body)}`);
    expect(tampered.status).toBe(400);
    const notJson = await deliver("not json");
    expect(notJson.status).toBe(400);
    expect((notJson.body as unknown as ErrorBody).error).toMatchObject({ type: "invalid_request_error", code: "invalid_value" });
  });
});

describe("POST /webhooks/stripe events", () => {
  it("suspends on payment_failed (403 tenant_suspended within 5 s), restores on succeeded, and ignores an older failure delivered late", async () => {
    const t = await billedTenant();
    await modelsStatusBecomes(t.key, 200);
    const failedAt = now() - 60;
    const failed = await deliver(event("payment_intent.payment_failed", paymentIntent(t.customer), failedAt));
    expect(failed).toEqual({ status: 200, body: { received: true, outcome: "applied" } });
    expect((await tenantRow(t.tenantId)).status).toBe("suspended");
    const blocked = await modelsStatusBecomes(t.key, 403);
    expect(blocked.body).toMatchObject({ error: { code: "tenant_suspended" } });

    const succeeded = await deliver(event("payment_intent.succeeded", paymentIntent(t.customer), failedAt + 30));
    expect(succeeded.body).toEqual({ received: true, outcome: "applied" });
    await modelsStatusBecomes(t.key, 200);

    // Delivered after the success, but created before it: out of order, so no effect.
    const late = await deliver(event("payment_intent.payment_failed", paymentIntent(t.customer), failedAt + 10));
    expect(late).toEqual({ status: 200, body: { received: true, outcome: "ignored" } });
    const row = await tenantRow(t.tenantId);
    expect(row.status).toBe("active");
    expect(row.paymentEventAt?.getTime()).toBe((failedAt + 30) * 1000);

    const audits = await stripeAudits(t.tenantId);
    expect(audits.map((a) => a.action).sort()).toEqual(["stripe.payment_intent.payment_failed", "stripe.payment_intent.succeeded"]);
    const failure = audits.find((a) => a.action === "stripe.payment_intent.payment_failed");
    expect(failure?.details).toMatchObject({ before: { status: "active" }, after: { status: "suspended", stripe_customer_id: t.customer } });
  });

  it("applies a replayed event id only once", async () => {
    const t = await billedTenant();
    const body = event("payment_intent.payment_failed", paymentIntent(t.customer));
    expect((await deliver(body)).body).toEqual({ received: true, outcome: "applied" });
    // Restore by hand; a replay of the failure must not suspend again.
    await admin("POST", `/tenants/${t.tenantId}/resume`);
    expect(await deliver(body)).toEqual({ status: 200, body: { received: true, duplicate: true } });
    expect((await tenantRow(t.tenantId)).status).toBe("active");
    expect(await stripeAudits(t.tenantId)).toHaveLength(1);
  });

  it("sets the plan and status from customer.subscription.updated", async () => {
    const t = await billedTenant();
    const sub = (status: string, lookupKey: string | null) => ({
      id: newId("sub"),
      object: "subscription",
      customer: t.customer,
      status,
      items: { object: "list", data: [{ id: newId("si"), price: { id: "price_123", lookup_key: lookupKey } }] },
    });
    const created = now() - 100;
    expect((await deliver(event("customer.subscription.updated", sub("active", "pro"), created))).body).toMatchObject({ outcome: "applied" });
    expect(await tenantRow(t.tenantId)).toMatchObject({ plan: "pro", status: "active" });

    expect((await deliver(event("customer.subscription.updated", sub("past_due", null), created + 10))).body).toMatchObject({ outcome: "applied" });
    expect(await tenantRow(t.tenantId)).toMatchObject({ plan: "price_123", status: "suspended" });

    // Older than the last applied subscription event.
    expect((await deliver(event("customer.subscription.updated", sub("active", "enterprise"), created + 5))).body).toMatchObject({ outcome: "ignored" });
    expect(await tenantRow(t.tenantId)).toMatchObject({ plan: "price_123", status: "suspended" });
  });

  it("moves billedThrough forward on invoice.paid and invoice.payment_succeeded, never back", async () => {
    const t = await billedTenant();
    const end = now() + 30 * 86_400;
    const invoice = (periodEnd: number, lineEnds: number[]) => ({
      id: newId("in"),
      object: "invoice",
      customer: t.customer,
      status: "paid",
      period_end: periodEnd,
      lines: { object: "list", data: lineEnds.map((e) => ({ period: { start: e - 86_400, end: e } })) },
    });
    expect((await deliver(event("invoice.paid", invoice(now(), [end - 10, end])))).body).toMatchObject({ outcome: "applied" });
    expect((await tenantRow(t.tenantId)).billedThrough?.getTime()).toBe(end * 1000);
    expect((await deliver(event("invoice.payment_succeeded", invoice(end - 100, [])))).body).toMatchObject({ outcome: "ignored" });
    expect((await tenantRow(t.tenantId)).billedThrough?.getTime()).toBe(end * 1000);
    expect((await deliver(event("invoice.payment_succeeded", invoice(end + 100, [])))).body).toMatchObject({ outcome: "applied" });
    expect((await tenantRow(t.tenantId)).billedThrough?.getTime()).toBe((end + 100) * 1000);
    const audits = await stripeAudits(t.tenantId);
    expect(audits).toHaveLength(2);
  });

  it("acknowledges an unknown type and an unknown customer, recording them without effect", async () => {
    const unknownId = newId("evt");
    expect(await deliver(event("charge.refunded", { id: "ch_1", customer: "cus_nobody" }, now(), unknownId))).toEqual({ status: 200, body: { received: true, outcome: "ignored" } });
    const noTenantId = newId("evt");
    expect(await deliver(event("payment_intent.payment_failed", paymentIntent("cus_nobody"), now(), noTenantId))).toEqual({
      status: 200,
      body: { received: true, outcome: "no_tenant" },
    });
    const rows = await query((db) => db.select().from(stripeEvents));
    expect(rows.find((r) => r.id === unknownId)).toMatchObject({ type: "charge.refunded", outcome: "ignored" });
    expect(rows.find((r) => r.id === noTenantId)).toMatchObject({ outcome: "no_tenant" });
  });
});

describe("admin stripe_customer_id", () => {
  it("links a tenant to a Stripe customer on create and patch, validating the id and refusing a customer taken", async () => {
    const customer = `cus_${crypto.randomUUID().replaceAll("-", "").slice(0, 14)}`;
    const a = expectStatus(await admin<{ id: string; stripe_customer_id: string | null }>("POST", "/tenants", { name: "stripe-a", stripe_customer_id: customer }), 201);
    expect(a.stripe_customer_id).toBe(customer);
    const b = expectStatus(await admin<{ id: string }>("POST", "/tenants", { name: "stripe-b" }), 201);
    expect(expectStatus(await admin<ErrorBody>("PATCH", `/tenants/${b.id}`, { stripe_customer_id: "acct_1" }), 400).error.param).toBe("stripe_customer_id");
    expect(expectStatus(await admin<ErrorBody>("PATCH", `/tenants/${b.id}`, { stripe_customer_id: customer }), 409).error.code).toBe("conflict");
    expect(expectStatus(await admin("PATCH", `/tenants/${a.id}`, { stripe_customer_id: null }), 200)).toMatchObject({ stripe_customer_id: null });
    expect(expectStatus(await admin("PATCH", `/tenants/${b.id}`, { stripe_customer_id: customer }), 200)).toMatchObject({ stripe_customer_id: customer });
  });
});
