import type { KeyIdentity } from "../auth/identity.ts";
import { ApiError } from "../errors.ts";
import { statusOf, type ReservationRates } from "../routing/reservation-usage.ts";
import type { ReservationEntry } from "../routing/snapshot.ts";

/** Scheduling classes, highest first (docs/priority.md). */
export const PRIORITY_CLASSES = ["interactive", "standard", "batch"] as const;

/** A request's scheduling class. */
export type PriorityClass = (typeof PRIORITY_CLASSES)[number];

/** The class of a key or environment without a setting. */
export const DEFAULT_PRIORITY_CLASS: PriorityClass = "standard";

/** Request header that lowers a request's class; the response echoes the class used under the same name. */
export const PRIORITY_HEADER = "x-switchyard-priority";

/** The priority a request runs with: its class, whether its tenant reserves the model, and the rank both give. */
export interface RequestPriority {
  class: PriorityClass;
  reserved: boolean;
  /** Lower runs first (priorityRank); also the `priority` vLLM gets on engines with priority scheduling. */
  rank: number;
}

/** True for one of the three class names. */
export function isPriorityClass(value: unknown): value is PriorityClass {
  return typeof value === "string" && (PRIORITY_CLASSES as readonly string[]).includes(value);
}

/** Error for an `x-switchyard-priority` header that names no class: a 400, since silently ignoring a typo would run the request at the wrong class. */
export function invalidPriorityHeader(value: string): ApiError {
  return new ApiError("invalid_value", `Invalid ${PRIORITY_HEADER} header ${JSON.stringify(value.slice(0, 40))}: use one of ${PRIORITY_CLASSES.join(", ")} (a request may lower its class, never raise it).`, {
    param: PRIORITY_HEADER,
  });
}

/**
 * The class a request runs at: the key's effective class (key ?? environment ?? standard, resolved when
 * the identity is loaded; identities cached before the field existed are standard), lowered by the
 * header when it names a lower class. A header naming a higher class is clamped to the allowed one
 * (not an error: a client may send the same header from keys of different classes). An absent or
 * empty header keeps the allowed class; an unknown value throws `invalidPriorityHeader` (400).
 */
export function effectiveClass(identity: Pick<KeyIdentity, "priorityClass">, headerValue: string | null | undefined): PriorityClass {
  const allowed = isPriorityClass(identity.priorityClass) ? identity.priorityClass : DEFAULT_PRIORITY_CLASS;
  const asked = (headerValue ?? "").trim().toLowerCase();
  if (asked === "") return allowed;
  if (!isPriorityClass(asked)) throw invalidPriorityHeader(headerValue ?? "");
  return PRIORITY_CLASSES.indexOf(asked) > PRIORITY_CLASSES.indexOf(allowed) ? asked : allowed;
}

/**
 * Scheduling rank, lower runs first: interactive-reserved 0 < interactive 1 < standard-reserved 2 <
 * standard 3 < batch-reserved 4 < batch 5. Reserved tenants rank above the rest within their class, never
 * above a higher class.
 */
export function priorityRank(cls: PriorityClass, reserved: boolean): number {
  return PRIORITY_CLASSES.indexOf(cls) * 2 + (reserved ? 0 : 1);
}

/** Highest rank number (the lowest priority): batch without a reservation. */
export const LOWEST_PRIORITY_RANK = priorityRank("batch", false);

/**
 * A request's priority: its class (effectiveClass), whether its tenant is within its reservation on
 * the model (under its reserved throughput, or its rate unknown: routing/reservation-usage.ts; a
 * tenant over its rate spills like anyone else's traffic and ranks like it), and the rank.
 */
export function requestPriority(
  identity: Pick<KeyIdentity, "priorityClass" | "tenantId">,
  headerValue: string | null | undefined,
  reservations: readonly ReservationEntry[] | undefined,
  rates: ReservationRates,
  model: string,
): RequestPriority {
  const cls = effectiveClass(identity, headerValue);
  const reserved = statusOf([...(reservations ?? [])], rates, identity.tenantId, model).state === "under";
  return { class: cls, reserved, rank: priorityRank(cls, reserved) };
}
