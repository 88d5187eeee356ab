import { Ratelimit } from "@upstash/ratelimit";
import type { Redis } from "@upstash/redis/cloudflare";
import { LAYERS, layerId, type AdmissionSubject, type Layer, type RedisBatch } from "./types.ts";

/** What a per-minute limit counts. */
export type RateKind = "requests" | "tokens";

/** The outcome of the per-minute limits of one request, across every layer. */
export interface RateDecision {
  allowed: boolean;
  /** When refused: which layer and what was exhausted. */
  blocked: { layer: Layer; kind: RateKind } | null;
  /** Seconds until the blocking window frees up (for Retry-After); 0 when allowed. */
  retryAfterSeconds: number;
  /** OpenAI's x-ratelimit-{limit,remaining,reset}-{requests,tokens} headers for the tightest layer of each dimension. */
  headers: Record<string, string>;
  /** Background work (ratelimit's pending promises) for waitUntil. */
  pending: Promise<unknown>;
  /** When Redis did not answer in time or failed: the limit was skipped (fail-open) — true so callers can log and count it. */
  degraded: boolean;
}

// Algorithm: ratelimit's token bucket, refilled every second with limit/60 (so a minute refills the
// whole limit) and holding at most one minute's worth.
// - It is OpenAI's model: capacity replenishes continuously and "reset" means "back to full".
// - Its script refuses a `rate` larger than what is left without consuming it. ratelimit's sliding
//   window only checks `used >= limit` before INCRBY, so a 4 000-token request with 1 000 left would
//   be consumed *and* refused, burning the key's quota on requests it never served.
// - One hash per identifier, one script call per check; no boundary double-burst of fixed windows.
const WINDOW_MS = 60_000;
const REFILL_MS = 1_000;
const DEFAULT_TIMEOUT_MS = 1_000;
// Instances are memoised per limit; limits come from config and plans, so this bound is never hit in
// production, only by tests that make a fresh prefix each time. Dropping one only loses its cache.
const MAX_LIMITERS = 1_000;

// Module scope on purpose: ratelimit's ephemeralCache (identifier -> blocked-until) lives in the
// Ratelimit instance, so a blocked key is refused without a Redis call only if the instance outlives
// the request. Keyed by the Redis client, which is itself module-scoped (platform/redis.ts).
const limiters = new WeakMap<Redis, Map<string, Ratelimit>>();

function limiterFor(redis: Redis, prefix: string, kind: RateKind, limit: number): Ratelimit {
  let byLimit = limiters.get(redis);
  if (!byLimit) {
    byLimit = new Map();
    limiters.set(redis, byLimit);
  }
  const memoKey = `${prefix}|${kind}|${limit}`;
  const existing = byLimit.get(memoKey);
  if (existing) return existing;
  if (byLimit.size >= MAX_LIMITERS) {
    const oldest = byLimit.keys().next();
    if (oldest.done !== true) byLimit.delete(oldest.value);
  }
  const limiter = new Ratelimit({
    redis,
    prefix: `${prefix}rl`,
    limiter: Ratelimit.tokenBucket((limit * REFILL_MS) / WINDOW_MS, `${REFILL_MS} ms`, limit),
    // No timer per limiter: checkRateLimits puts one deadline on all of them (fail open).
    timeout: 0,
    analytics: false,
    enableTelemetry: false,
  });
  byLimit.set(memoKey, limiter);
  return limiter;
}

interface Check {
  layer: Layer;
  kind: RateKind;
  limit: number;
  /** Units this request asks for (1 request, or its token estimate). */
  rate: number;
}

type Outcome =
  | { state: "allowed"; remaining: number; fullInMs: number; pending: Promise<unknown> }
  | { state: "refused"; retryAfterMs: number; fullInMs: number; pending: Promise<unknown> }
  | { state: "degraded" };

type Checked = Check & { outcome: Outcome };

/**
 * Checks requests and tokens per minute at every layer with a limit, all in parallel (one round trip;
 * redis-js auto-pipelines them into one request). Fails open: an outage of Redis must not take the
 * API down, so a timeout or a Redis error allows the request with `degraded: true`. (Budgets, which
 * guard money, fail closed elsewhere.)
 *
 * When one layer refuses, the layers that allowed have already consumed their request and tokens.
 * That over-count is accepted: undoing it would cost a second round trip on every refusal and
 * could itself fail, and it errs on the side of the limit.
 */
export async function checkRateLimits(
  redis: Redis,
  prefix: string,
  subject: AdmissionSubject,
  tokens: number,
  opts: { timeoutMs?: number } = {},
): Promise<RateDecision> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  // A negative rate would refund the bucket; a fractional one makes no sense for tokens.
  const tokenRate = Math.max(0, Math.ceil(tokens));
  const checks: Check[] = [];
  for (const layer of LAYERS) {
    const { rpm, tpm } = subject.limits[layer];
    if (rpm !== null) checks.push({ layer, kind: "requests", limit: rpm, rate: 1 });
    if (tpm !== null) checks.push({ layer, kind: "tokens", limit: tpm, rate: tokenRate });
  }
  if (checks.length === 0) {
    return { allowed: true, blocked: null, retryAfterSeconds: 0, headers: {}, pending: Promise.resolve(), degraded: false };
  }
  // A request larger than a whole minute's tokens (or any request under a zero limit) can never pass.
  // Refusing it here consumes nothing at the other layers and keeps it out of the blocked-identifier
  // cache, where it would refuse the key's ordinary requests until the next refill. admission.ts
  // answers such a request with a 400 before it gets here; what remains is a zero limit (a block).
  const oversized = checks.find((c) => c.rate > c.limit || c.limit <= 0);
  if (oversized) {
    return {
      allowed: false,
      blocked: { layer: oversized.layer, kind: oversized.kind },
      retryAfterSeconds: WINDOW_MS / 1000,
      headers: {},
      pending: Promise.resolve(),
      degraded: false,
    };
  }

  // One deadline for every layer (a timer per check costs CPU on every request): when Redis does not
  // answer within timeoutMs, every check that has not answered fails open.
  const outcomes: (Outcome | undefined)[] = checks.map(() => undefined);
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    Promise.all(checks.map(async (check, i) => (outcomes[i] = await runCheck(redis, prefix, subject, check)))),
    new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs))),
  ]);
  if (timer !== undefined) clearTimeout(timer);
  const checked: Checked[] = checks.map((check, i) => ({ ...check, outcome: outcomes[i] ?? { state: "degraded" } }));

  let blocking: Checked | null = null;
  let retryAfterMs = 0;
  for (const c of checked) {
    // Retry-After must cover every refusing layer, so report the one that frees up last.
    if (c.outcome.state === "refused" && (blocking === null || c.outcome.retryAfterMs > retryAfterMs)) {
      blocking = c;
      retryAfterMs = c.outcome.retryAfterMs;
    }
  }
  const pendings = checked.flatMap((c) => (c.outcome.state === "degraded" ? [] : [c.outcome.pending]));
  return {
    allowed: blocking === null,
    blocked: blocking === null ? null : { layer: blocking.layer, kind: blocking.kind },
    retryAfterSeconds: blocking === null ? 0 : Math.max(1, Math.ceil(retryAfterMs / 1000)),
    headers: { ...headersFor(checked, "requests"), ...headersFor(checked, "tokens") },
    // allSettled: background work failing must not surface as an unhandled rejection in waitUntil.
    pending: Promise.allSettled(pendings),
    degraded: checked.some((c) => c.outcome.state === "degraded"),
  };
}

// Takes `amount` from a token bucket unconditionally, letting it go below zero: ratelimit's own
// script refuses a rate larger than what is left, but usage the engine already served must be counted.
// Same hash fields and refill arithmetic as ratelimit 2.2.0's tokenBucketLimitScript, so the next
// check refills from the negative balance and refuses until the overrun has been paid back.
// KEYS: the bucket. ARGV: limit, refill interval (ms), refill per interval, now (ms), amount.
const CHARGE = `
local limit, interval, refill, now, amount = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local bucket = redis.call("HMGET", KEYS[1], "refilledAt", "tokens")
local refilledAt, tokens = now, limit
if bucket[1] then
  refilledAt = tonumber(bucket[1])
  tokens = tonumber(bucket[2])
end
if now >= refilledAt + interval then
  local refills = math.floor((now - refilledAt) / interval)
  tokens = math.min(limit, tokens + refills * refill)
  refilledAt = refilledAt + refills * interval
end
local remaining = tokens - amount
redis.call("HSET", KEYS[1], "refilledAt", refilledAt, "tokens", remaining)
local ttl = math.ceil((limit - remaining) / refill) * interval
if ttl > 0 then redis.call("PEXPIRE", KEYS[1], ttl) end
return remaining
`;

/**
 * Charges `tokens` more to the tokens-per-minute bucket of every layer with a limit: usage beyond the
 * admission estimate, counted after the response. With a batch, only adds the writes to it.
 */
export async function chargeTokens(redis: Redis, prefix: string, subject: AdmissionSubject, tokens: number, batch?: RedisBatch): Promise<void> {
  const amount = Math.ceil(tokens);
  if (amount <= 0) return;
  const layers = LAYERS.filter((layer) => (subject.limits[layer].tpm ?? 0) > 0);
  if (layers.length === 0) return;
  const pipe = batch ?? redis.pipeline();
  const now = Date.now();
  for (const layer of layers) {
    const limit = subject.limits[layer].tpm ?? 0;
    // The key ratelimit uses for the bucket: `${its prefix}:${identifier}` (see limiterFor and runCheck).
    const key = `${prefix}rl:tok:${layerId(subject, layer)}`;
    pipe.eval(CHARGE, [key], [limit, REFILL_MS, (limit * REFILL_MS) / WINDOW_MS, now, amount]);
  }
  if (!batch) await pipe.exec();
}

async function runCheck(redis: Redis, prefix: string, subject: AdmissionSubject, check: Check): Promise<Outcome> {
  const limiter = limiterFor(redis, prefix, check.kind, check.limit);
  const identifier = `${check.kind === "requests" ? "req" : "tok"}:${layerId(subject, check.layer)}`;
  try {
    const res = await limiter.limit(identifier, { rate: check.rate });
    if (res.reason === "timeout") return { state: "degraded" };
    const now = Date.now();
    // res.reset is the bucket's next refill; "cacheBlock" refusals carry the reset cached with the block.
    const nextRefillMs = Math.max(0, res.reset - now);
    if (res.success) {
      return { state: "allowed", remaining: res.remaining, fullInMs: untilHolding(check.limit, check.limit - res.remaining, nextRefillMs), pending: res.pending };
    }
    // A refusal does not say how much is left, so assume none: Retry-After is then never too early
    // (for requests, at most one refill step too late).
    return {
      state: "refused",
      retryAfterMs: untilHolding(check.limit, check.rate, nextRefillMs),
      fullInMs: untilHolding(check.limit, check.limit, nextRefillMs),
      pending: res.pending,
    };
  } catch {
    // ratelimit rethrows Redis errors that beat its timeout; those fail open as well.
    return { state: "degraded" };
  }
}

/** Milliseconds until a bucket of `limit` per minute has refilled `deficit` units, given its next refill. */
function untilHolding(limit: number, deficit: number, nextRefillMs: number): number {
  if (deficit <= 0 || limit <= 0) return 0;
  const refills = Math.ceil((deficit * WINDOW_MS) / (limit * REFILL_MS));
  return nextRefillMs + (refills - 1) * REFILL_MS;
}

function headersFor(checked: Checked[], kind: RateKind): Record<string, string> {
  let tightest: { limit: number; remaining: number; fullInMs: number } | null = null;
  for (const c of checked) {
    if (c.kind !== kind || c.outcome.state === "degraded") continue;
    const remaining = c.outcome.state === "allowed" ? c.outcome.remaining : 0;
    const candidate = { limit: c.limit, remaining, fullInMs: c.outcome.fullInMs };
    if (
      tightest === null ||
      candidate.remaining < tightest.remaining ||
      (candidate.remaining === tightest.remaining && candidate.fullInMs > tightest.fullInMs)
    ) {
      tightest = candidate;
    }
  }
  if (tightest === null) return {};
  return {
    [`x-ratelimit-limit-${kind}`]: String(tightest.limit),
    [`x-ratelimit-remaining-${kind}`]: String(tightest.remaining),
    [`x-ratelimit-reset-${kind}`]: formatDuration(tightest.fullInMs),
  };
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
