/**
 * The Stripe events the gateway acts on, parsed from the event envelope
 * (`{id, object: "event", created, type, data: {object}}`, see stripe-node `src/resources/Events.ts`)
 * into what each one asks of a tenant. Only the fields used are validated; Stripe adds fields freely.
 */
import { z } from "zod";
import { ApiError } from "../errors.ts";

const envelope = z.object({
  id: z.string().min(1),
  type: z.string().min(1),
  /** Unix seconds, Stripe's clock. */
  created: z.number().int().nonnegative(),
  data: z.object({ object: z.record(z.string(), z.unknown()) }),
});

/** `customer` is an id, or an expanded Customer object, or null (a guest payment). */
const customer = z.union([z.string(), z.object({ id: z.string() }), z.null()]).optional();
const withCustomer = z.object({ customer });

const subscription = z.object({
  customer,
  status: z.string(),
  items: z
    .object({ data: z.array(z.object({ price: z.object({ id: z.string(), lookup_key: z.string().nullish() }) })) })
    .optional(),
});

const invoice = z.object({
  customer,
  period_end: z.number().int().optional(),
  lines: z.object({ data: z.array(z.object({ period: z.object({ end: z.number().int() }).optional() })) }).optional(),
});

/** Subscription statuses that keep a tenant serving, and those that suspend it; others leave status alone. */
const ACTIVE_SUBSCRIPTION = new Set(["active", "trialing"]);
const SUSPENDING_SUBSCRIPTION = new Set(["past_due", "unpaid", "canceled", "incomplete_expired"]);

/** What an event asks of its customer's tenant. */
export type BillingChange =
  | { kind: "payment"; status: "active" | "suspended" }
  | { kind: "subscription"; plan: string | null; status: "active" | "suspended" | null }
  | { kind: "invoice"; periodEnd: Date | null };

/** A verified event: its id, type and time, its customer (null if none), and the change (null: type not handled). */
export interface BillingEvent {
  id: string;
  type: string;
  created: Date;
  customerId: string | null;
  change: BillingChange | null;
}

function malformed(message: string): ApiError {
  return new ApiError("invalid_value", `Malformed Stripe event: ${message}`);
}

function customerId(value: z.infer<typeof customer>): string | null {
  if (value === undefined || value === null) return null;
  return typeof value === "string" ? value : value.id;
}

function parse<S extends z.ZodType>(schema: S, value: unknown, type: string): z.infer<S> {
  const result = schema.safeParse(value);
  if (!result.success) throw malformed(`data.object of ${type}: ${result.error.issues[0]?.message ?? "invalid"}`);
  return result.data;
}

/** The invoice's service period end: the latest line period end, else `period_end`. */
function invoicePeriodEnd(inv: z.infer<typeof invoice>): Date | null {
  const ends = (inv.lines?.data ?? []).flatMap((l) => (l.period ? [l.period.end] : []));
  const seconds = ends.length > 0 ? Math.max(...ends) : inv.period_end;
  return seconds === undefined ? null : new Date(seconds * 1000);
}

/** Parses a verified webhook body; 400 `invalid_value` when it is not a Stripe event. */
export function parseEvent(body: string): BillingEvent {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    throw malformed("the body is not JSON.");
  }
  const result = envelope.safeParse(json);
  if (!result.success) throw malformed(`${result.error.issues[0]?.path.join(".") ?? "body"}: ${result.error.issues[0]?.message ?? "invalid"}.`);
  const { id, type, created, data } = result.data;
  const base = { id, type, created: new Date(created * 1000) };
  switch (type) {
    case "payment_intent.succeeded":
    case "payment_intent.payment_failed": {
      const pi = parse(withCustomer, data.object, type);
      const status = type === "payment_intent.succeeded" ? "active" : "suspended";
      return { ...base, customerId: customerId(pi.customer), change: { kind: "payment", status } };
    }
    case "customer.subscription.updated": {
      const sub = parse(subscription, data.object, type);
      const price = sub.items?.data[0]?.price;
      const plan = price ? (price.lookup_key ?? price.id) : null;
      const status = ACTIVE_SUBSCRIPTION.has(sub.status) ? "active" : SUSPENDING_SUBSCRIPTION.has(sub.status) ? "suspended" : null;
      return { ...base, customerId: customerId(sub.customer), change: { kind: "subscription", plan, status } };
    }
    case "invoice.payment_succeeded":
    case "invoice.paid": {
      const inv = parse(invoice, data.object, type);
      return { ...base, customerId: customerId(inv.customer), change: { kind: "invoice", periodEnd: invoicePeriodEnd(inv) } };
    }
    default:
      return { ...base, customerId: null, change: null };
  }
}
