import { CHARGE, REFILL_MS, WINDOW_MS } from "./lease-scripts.ts";
import type { RedisBatch } from "./types.ts";

/** What a per-minute limit counts. */
export type RateKind = "requests" | "tokens";

// Algorithm: a token bucket per layer and kind, refilled every second with limit/60 (so a minute
// refills the whole limit) and holding at most one minute's worth: OpenAI's model, where capacity
// replenishes continuously and "reset" means "back to full". The bucket is stored as
// @upstash/ratelimit 2.2.0's tokenBucket stores it (a hash with `refilledAt` and `tokens` under
// `<prefix>rl:<req|tok>:<layer id>`); admission takes from it through capacity leases
// (lease-scripts.ts), which can grant more than one request's worth and take several buckets at once,
// neither of which ratelimit's script can.

/**
 * Charges `amount` more tokens to a tokens-per-minute bucket, below zero if need be: usage beyond
 * the admission estimate that the isolate's lease could not absorb, counted after the response.
 * Adds the write to `batch`.
 */
export function chargeBucket(batch: RedisBatch, bucket: { key: string; limit: number }, amount: number): void {
  batch.eval(CHARGE, [bucket.key], [bucket.limit, REFILL_MS, (bucket.limit * REFILL_MS) / WINDOW_MS, Date.now(), Math.ceil(amount)]);
}

/** Formats a duration as OpenAI's reset headers do (Go's time.Duration): "0s", "250ms", "1.5s", "6m0s", "1h2m3s". */
export function formatDuration(ms: number): string {
  const total = Math.max(0, Math.ceil(ms));
  if (total === 0) return "0s";
  if (total < 1000) return `${total}ms`;
  const hours = Math.floor(total / 3_600_000);
  const minutes = Math.floor((total % 3_600_000) / 60_000);
  const seconds = `${trimZeros(((total % 60_000) / 1000).toFixed(3))}s`;
  if (hours > 0) return `${hours}h${minutes}m${seconds}`;
  if (minutes > 0) return `${minutes}m${seconds}`;
  return seconds;
}

function trimZeros(fixed: string): string {
  return fixed.includes(".") ? fixed.replace(/0+$/, "").replace(/\.$/, "") : fixed;
}
