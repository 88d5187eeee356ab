import type { Redis } from "@upstash/redis/cloudflare";
import { REFILL_MS } from "./lease-scripts.ts";
import type { Resource } from "./leases.ts";

/**
 * How a resource stands across the whole deployment, read from Redis (GET /admin/counters):
 * - used: budgets, settled usage plus the reservations of requests in flight outside any lease;
 *   slots, held directly by requests whose lease went back; rate, taken from the bucket this minute
 *   and not in a lease.
 * - leased: held by isolates' leases that Redis has not taken back (budgets: their free capacity
 *   and the reservations of their requests in flight; rate: granted and not yet returned, so an
 *   upper bound of what they can still admit; slots: held by leases, in use or not).
 * - free: what a new lease or request could still take.
 */
export interface ResourceView {
  used: number;
  leased: number;
  free: number;
}

/** Reads the views of `resources` in one round trip. */
export async function readResourceViews(redis: Redis, resources: Resource[], now = Date.now()): Promise<ResourceView[]> {
  if (resources.length === 0) return [];
  const pipe = redis.pipeline();
  for (const r of resources) {
    if (r.kind === "budget") pipe.get(r.key);
    else if (r.kind === "rate") pipe.hmget(r.key, "refilledAt", "tokens");
    else pipe.zcount(r.key, now, "+inf");
    pipe.hgetall(`${r.key}:lease`);
  }
  const replies = await pipe.exec<unknown[]>();
  return resources.map((r, i) => {
    const main = replies[2 * i];
    const records = (replies[2 * i + 1] ?? {}) as Record<string, string | number>;
    let leased = 0;
    for (const [field, value] of Object.entries(records)) {
      if (field.includes(":")) continue;
      if (Number(records[`${field}:e`] ?? 0) < now) continue;
      leased += Number(value);
    }
    if (r.kind === "budget") {
      const counter = Number(main ?? 0);
      return { used: counter - leased, leased, free: Math.max(0, r.limit - counter) };
    }
    if (r.kind === "slots") {
      const direct = Number(main ?? 0);
      return { used: direct, leased, free: Math.max(0, r.limit - direct - leased) };
    }
    const bucket = (main ?? {}) as { refilledAt?: string | number | null; tokens?: string | number | null } | null;
    let tokens = r.limit;
    if (bucket && bucket.refilledAt !== null && bucket.refilledAt !== undefined) {
      const refills = Math.max(0, Math.floor((now - Number(bucket.refilledAt)) / REFILL_MS));
      tokens = Math.min(r.limit, Number(bucket.tokens ?? 0) + refills * r.extra);
    }
    const free = Math.max(0, Math.floor(tokens));
    return { used: Math.max(0, r.limit - free - leased), leased, free };
  });
}
