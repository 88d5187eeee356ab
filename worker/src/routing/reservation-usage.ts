/**
 * Reserved throughput (docs/routing.md, "Reserved capacity"): how many tokens per second a tenant
 * with a capacity reservation has been served on the reserved model, over a sliding window of
 * RESERVATION_WINDOW_SECONDS, and whether that is under or over what it reserved.
 *
 * What counts: prompt + completion tokens, the same tokens the tenant's limits and budgets count.
 * A reservation buys a share of a GPU node, and prefill is GPU work as much as decoding is (the
 * provisioned-throughput offers it mirrors count input and output tokens alike); counting only
 * completion tokens would let a tenant with long prompts occupy its node while looking idle.
 *
 * How it is kept: Redis hashes, one per bucket of a tenth of the window (at least a second), field
 * `tenant|model` → tokens (HINCRBY), each expiring once the window has passed it. Writes are only
 * for tenants with a reservation on the model, and go out in waitUntil: with the request's end
 * batch (metering/request-end.ts), and for a stream tapped by the gateway also while it runs, once
 * per bucket, from the count of content events it delivered so far (a long stream is not zero
 * throughput until it ends); its end adds the rest. Reads ride on the routing view's Redis round
 * trip (platform/hot-state.ts) and are cached with it for ROUTING_CACHE_ISOLATE_SECONDS.
 *
 * When Redis does not answer the rates are unknown (null): the reserving tenant is treated as under
 * its rate (its nodes first), and others may use its nodes under the half-full rule, as before
 * enforcement (pick.ts).
 */
import type { Redis } from "@upstash/redis/cloudflare";
import type { RedisBatch } from "../limits/types.ts";
import type { ReservationEntry, RoutingSnapshot } from "./snapshot.ts";

/** Measured throughput per `tenant|model` (tokens per second), for tenants with a reservation; null when unknown. */
export type ReservationRates = Record<string, number> | null;

/** Where a tenant stands against its reservation on a model. */
export type ReservationState = "none" | "under" | "over";

/** A tenant's reservation on a model and its measured throughput. */
export interface ReservationStatus {
  state: ReservationState;
  /** Reserved tokens per second (summed over the tenant's reservations on the model; 0 without one). */
  reserved: number;
  /** Delivered tokens per second over the window; null when unknown (Redis did not answer). */
  delivered: number | null;
  /** The reserved nodes (union over the tenant's reservations on the model). */
  nodeIds: string[];
}

/** The bucket and window geometry of a window of `windowSeconds`. */
export interface UsageWindow {
  bucketMs: number;
  buckets: number;
}

/** Ten buckets per window, each at least a second. */
export function usageWindow(windowSeconds: number): UsageWindow {
  const bucketMs = Math.max(1000, Math.floor((windowSeconds * 1000) / 10));
  return { bucketMs, buckets: Math.max(1, Math.round((windowSeconds * 1000) / bucketMs)) };
}

/** The field of a tenant's model in a bucket. */
export const rateField = (tenantId: string, model: string): string => `${tenantId}|${model}`;

/** The Redis key of the bucket holding `at` (the bucket length is in the key: changing the window starts fresh). */
export function bucketKey(prefix: string, w: UsageWindow, at: number): string {
  return `${prefix}resv:v1:${w.bucketMs}:${Math.floor(at / w.bucketMs)}`;
}

/** The keys of the window ending at `now`, oldest first. */
export function windowKeys(prefix: string, w: UsageWindow, now: number): string[] {
  const current = Math.floor(now / w.bucketMs);
  const keys: string[] = [];
  for (let i = current - w.buckets + 1; i <= current; i++) keys.push(`${prefix}resv:v1:${w.bucketMs}:${i}`);
  return keys;
}

/**
 * Tokens per second per `tenant|model` from the window's buckets (`hashes` in windowKeys' order,
 * null for a bucket with nothing). The span is the full buckets before the current one plus what has
 * passed of it, so the rate does not jump when a new bucket starts.
 */
export function ratesFrom(hashes: (Record<string, unknown> | null)[], w: UsageWindow, now: number): Record<string, number> {
  const totals: Record<string, number> = {};
  for (const hash of hashes) {
    if (!hash) continue;
    for (const [field, value] of Object.entries(hash)) {
      const n = Number(value);
      if (Number.isFinite(n)) totals[field] = (totals[field] ?? 0) + n;
    }
  }
  const spanMs = (w.buckets - 1) * w.bucketMs + Math.max(1, now % w.bucketMs);
  const rates: Record<string, number> = {};
  for (const [field, total] of Object.entries(totals)) rates[field] = Math.max(0, total) / (spanMs / 1000);
  return rates;
}

/** Queues the window's reads on a pipeline (the routing view's round trip); ratesFrom turns their results into rates. */
export function queueRateReads(pipe: RedisBatch, prefix: string, w: UsageWindow, now: number): number {
  const keys = windowKeys(prefix, w, now);
  for (const key of keys) pipe.hgetall(key);
  return keys.length;
}

/** Reads the window's rates directly (the admin view): null when Redis did not answer. */
export async function readRates(redis: Redis, prefix: string, w: UsageWindow, now = Date.now()): Promise<ReservationRates> {
  try {
    const pipe = redis.pipeline();
    queueRateReads(pipe, prefix, w, now);
    const results = await pipe.exec<(Record<string, unknown> | null)[]>();
    return ratesFrom(results, w, now);
  } catch {
    return null;
  }
}

/** Queues `tokens` served at `at` to a tenant's model on a pipeline (the request's end batch, or a stream's progress). */
export function queueTokens(pipe: RedisBatch, prefix: string, w: UsageWindow, tenantId: string, model: string, tokens: number, at: number): void {
  if (tokens === 0) return;
  const key = bucketKey(prefix, w, at);
  pipe.hincrby(key, rateField(tenantId, model), Math.round(tokens));
  // Kept until the window has moved past the bucket.
  pipe.expire(key, Math.ceil((w.buckets + 1) * w.bucketMs / 1000));
}

/** The snapshot's reservations of a tenant on a model. */
export function reservationsOf(snapshot: RoutingSnapshot, tenantId: string, model: string): ReservationEntry[] {
  return (snapshot.reservations ?? []).filter((r) => r.tenantId === tenantId && r.model === model);
}

/** Whether the tenant holds a reservation on the model (whose tokens are then measured). */
export function hasReservation(snapshot: RoutingSnapshot | null, tenantId: string, model: string): boolean {
  return snapshot !== null && (snapshot.reservations ?? []).some((r) => r.tenantId === tenantId && r.model === model);
}

/**
 * Where a tenant stands on a model: "none" without a reservation; "over" once its delivered
 * throughput reaches what it reserved; otherwise (or when the rate is unknown) "under".
 */
export function statusOf(reservations: ReservationEntry[], rates: ReservationRates, tenantId: string, model: string): ReservationStatus {
  const own = reservations.filter((r) => r.tenantId === tenantId && r.model === model);
  if (own.length === 0) return { state: "none", reserved: 0, delivered: rates === null ? null : 0, nodeIds: [] };
  const reserved = own.reduce((sum, r) => sum + r.tokensPerSecond, 0);
  const delivered = rates === null ? null : (rates[rateField(tenantId, model)] ?? 0);
  return { state: delivered !== null && delivered >= reserved ? "over" : "under", reserved, delivered, nodeIds: [...new Set(own.flatMap((r) => r.nodeIds))] };
}

/** What reservationState needs of the routing view (platform/hot-state.ts RoutingView). */
export interface RatesView {
  snapshot: RoutingSnapshot;
  reservationRates?: ReservationRates;
}

/** Whether `tenantId` has a reservation on `model` and is under or over it, per the routing view. */
export function reservationState(view: RatesView, tenantId: string, model: string): ReservationState {
  return statusOf(view.snapshot.reservations ?? [], view.reservationRates ?? null, tenantId, model).state;
}

/** Tokens of a stream already counted while it ran (streamProgress), by request id: its end counts the rest. */
const countedWhileStreaming = new Map<string, number>();
const MAX_STREAMS = 10_000;

/** Takes (and forgets) the tokens a request already counted while it streamed. */
export function takeStreamed(requestId: string): number {
  const n = countedWhileStreaming.get(requestId) ?? 0;
  countedWhileStreaming.delete(requestId);
  return n;
}

/**
 * Counts a reserving tenant's stream while it runs (in waitUntil): once per bucket, the content
 * events delivered since the last count (one per token with vLLM's streaming) go to Redis; the
 * request's end batch adds the rest of its prompt and completion tokens. Stops when the stream ends;
 * a failed write is only a lower count (logged by the caller's degraded mode: none needed here).
 */
export async function streamProgress(
  redis: Redis,
  prefix: string,
  w: UsageWindow,
  opts: { requestId: string; tenantId: string; model: string; delivered: () => number; done: Promise<unknown> },
): Promise<void> {
  let ended = false;
  const finished = opts.done.then(
    () => (ended = true),
    () => (ended = true),
  );
  // An entry the end never took (a path that settled nothing) must not pile up.
  if (countedWhileStreaming.size >= MAX_STREAMS) countedWhileStreaming.clear();
  countedWhileStreaming.set(opts.requestId, 0);
  for (;;) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([finished, new Promise<void>((resolve) => (timer = setTimeout(resolve, w.bucketMs)))]);
    clearTimeout(timer);
    if (ended || !countedWhileStreaming.has(opts.requestId)) return;
    const counted = countedWhileStreaming.get(opts.requestId) ?? 0;
    const delta = opts.delivered() - counted;
    if (delta <= 0) continue;
    countedWhileStreaming.set(opts.requestId, counted + delta);
    const pipe = redis.pipeline();
    queueTokens(pipe, prefix, w, opts.tenantId, opts.model, delta, Date.now());
    await pipe.exec().catch(() => {
      // Not counted after all (unless the end already took the count).
      const now = countedWhileStreaming.get(opts.requestId);
      if (now !== undefined) countedWhileStreaming.set(opts.requestId, now - delta);
    });
  }
}
