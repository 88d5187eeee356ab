/**
 * `POST /webhooks/stripe`: Stripe's payments and subscription drive a tenant's status, plan and
 * billed-through date. No API key: the Stripe-Signature header (signature.ts) is the credential.
 *
 * Delivery is at least once and unordered (wire-formats.md §4), so the event id is recorded in
 * `stripe_events` in the same transaction as its effect (a replay finds it and does nothing), and
 * each event's `created` is compared with the tenant's watermark for its kind (`payment_event_at`,
 * `subscription_event_at`): an older one is recorded as ignored. Invoices only ever move
 * `billed_through` forward, so their order does not matter. The work is one small transaction,
 * done before answering; if Postgres fails the answer is 500 and Stripe retries the delivery.
 */
import { eq } from "drizzle-orm";
import type { Context } from "hono";
import { stripeEvents, tenants } from "../../../schema/tables/index.ts";
import { cacheKeysOf, dropCaches } from "../admin/invalidate.ts";
import { recordAudit, type AdminDb } from "../admin/store.ts";
import { tenantJson } from "../admin/wire.ts";
import type { AppEnv } from "../env.ts";
import { parseEvent, type BillingChange, type BillingEvent } from "./events.ts";
import { verifyStripeSignature } from "./signature.ts";

/** What handling an event did (stored in `stripe_events.outcome`). */
export type Outcome = "applied" | "ignored" | "no_tenant";

/** The name recorded in `audit_logs.actor` for changes made by Stripe events. */
export const STRIPE_ACTOR = "stripe";

type TenantRow = typeof tenants.$inferSelect;
type TenantUpdate = Partial<Pick<TenantRow, "status" | "plan" | "paymentEventAt" | "subscriptionEventAt" | "billedThrough">>;

function olderThan(created: Date, watermark: Date | null): boolean {
  return watermark !== null && created.getTime() < watermark.getTime();
}

/** The update an event makes to its tenant; null when it is older than the tenant's state or moves nothing. */
function updateFor(created: Date, change: BillingChange, tenant: TenantRow): TenantUpdate | null {
  switch (change.kind) {
    case "payment":
      if (olderThan(created, tenant.paymentEventAt)) return null;
      return { status: change.status, paymentEventAt: created };
    case "subscription": {
      if (olderThan(created, tenant.subscriptionEventAt)) return null;
      const update: TenantUpdate = { subscriptionEventAt: created };
      if (change.plan !== null) update.plan = change.plan;
      if (change.status !== null) update.status = change.status;
      return update;
    }
    case "invoice":
      if (change.periodEnd === null) return null;
      if (tenant.billedThrough !== null && change.periodEnd.getTime() <= tenant.billedThrough.getTime()) return null;
      return { billedThrough: change.periodEnd };
  }
}

/** Applies an event not seen before; returns its outcome and the cache keys a status change made stale. */
async function apply(db: AdminDb, event: BillingEvent, prefix: string): Promise<{ outcome: Outcome; cacheKeys: string[] }> {
  if (event.change === null) return { outcome: "ignored", cacheKeys: [] };
  if (event.customerId === null) return { outcome: "no_tenant", cacheKeys: [] };
  // Locked so that two events of one tenant delivered at once are compared with each other's result.
  const [before] = await db.select().from(tenants).where(eq(tenants.stripeCustomerId, event.customerId)).for("update");
  if (!before) return { outcome: "no_tenant", cacheKeys: [] };
  const update = updateFor(event.created, event.change, before);
  if (update === null) return { outcome: "ignored", cacheKeys: [] };
  const [after] = await db.update(tenants).set(update).where(eq(tenants.id, before.id)).returning();
  if (!after) throw new Error(`tenant ${before.id} vanished while locked`);
  await recordAudit(db, STRIPE_ACTOR, `stripe.${event.type}`, "tenant", after.id, after.id, {
    event_id: event.id,
    before: tenantJson(before),
    after: tenantJson(after),
  });
  const cacheKeys = before.status !== after.status ? await cacheKeysOf(db, prefix, { tenantId: after.id }) : [];
  return { outcome: "applied", cacheKeys };
}

/** Records the event id and applies the event, in one transaction; "duplicate" when the id was already recorded. */
async function handle(db: AdminDb, event: BillingEvent, prefix: string): Promise<{ outcome: Outcome | "duplicate"; cacheKeys: string[] }> {
  // Inserted first: a concurrent delivery of the same id waits on this row and then finds it.
  const inserted = await db
    .insert(stripeEvents)
    .values({ id: event.id, type: event.type, createdAt: event.created, outcome: "pending" })
    .onConflictDoNothing({ target: stripeEvents.id })
    .returning({ id: stripeEvents.id });
  if (inserted.length === 0) return { outcome: "duplicate", cacheKeys: [] };
  const result = await apply(db, event, prefix);
  await db.update(stripeEvents).set({ outcome: result.outcome }).where(eq(stripeEvents.id, event.id));
  return result;
}

/** The webhook handler: verify, parse, handle once, drop the tenant's key caches if its status changed. */
export async function stripeWebhook(c: Context<AppEnv>): Promise<Response> {
  const body = await c.req.text();
  await verifyStripeSignature(body, c.req.header("stripe-signature"), c.get("deps").secrets.stripeWebhook);
  const event = parseEvent(body);
  const prefix = c.get("deps").settings.redisPrefix;
  const { outcome, cacheKeys } = await c.get("deps").db((db) => db.transaction((tx) => handle(tx, event, prefix)));
  await dropCaches(c, cacheKeys);
  c.get("deps").log("stripe_event", { requestId: c.get("deps").requestId, eventId: event.id, type: event.type, outcome });
  return c.json(outcome === "duplicate" ? { received: true, duplicate: true } : { received: true, outcome });
}
