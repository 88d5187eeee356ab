import type { Redis } from "@upstash/redis/cloudflare";
import { ACQUIRE, ACQUIRE_RESULTS_PER_RESOURCE, KIND, RETURN, type ResourceKind } from "./lease-scripts.ts";
import type { RedisBatch } from "./types.ts";
import type { Settlement } from "./write-batch.ts";

/**
 * Capacity leases, the isolate side (docs/limits.md, "Capacity leases"; the Redis side is
 * lease-scripts.ts). Each isolate holds small grants of capacity taken atomically from Redis and
 * admits requests against them in memory:
 *
 * - A request whose every need is covered by this isolate's leases is admitted with no network
 *   round trip. Leases running low (or half way to their end) are refilled in the background
 *   (`waitUntil`), so a steady stream of requests does not wait.
 * - A request some lease cannot cover asks Redis for what is missing, in one round trip (the
 *   synchronous path); the grant may be larger than the need and becomes (or tops up) a lease.
 * - Unused capacity goes back to Redis when a lease ends (`LEASE_SECONDS` after its last grant) or
 *   its isolate has not used it for `LEASE_IDLE_MS`; Redis takes back the lease of an isolate that
 *   died `LEASE_SECONDS` + 60 s after its last grant.
 */

/** Something limited: a token bucket, a slot count or a budget counter. */
export interface Resource {
  /** The main Redis key (bucket, slot set or budget counter); the lease hash is `<key>:lease`. */
  key: string;
  kind: ResourceKind;
  /** Per minute (rate), slots (slots) or the budget's amount. */
  limit: number;
  /** Rate: refill per second (limit / 60). Budget: the counter's TTL in seconds (0: none). */
  extra: number;
}

/** What a request needs of one resource. */
export interface Need {
  resource: Resource;
  amount: number;
}

/** Where a lease's dependencies come from (a request's, or a scheduled run's). */
export interface LeaseContext {
  redis: Redis;
  waitUntil(p: Promise<unknown>): void;
  log(event: string, fields: Record<string, unknown>): void;
  /** How long a lease may be used after its last grant (ms); 0 turns leases off: every request asks Redis for exactly its need. */
  leaseMs: number;
  /** A lease this isolate has not used for this long goes back to Redis (ms). */
  idleMs: number;
  /** Deadline of the synchronous round trip (ms). */
  timeoutMs: number;
  /** The budget marker (budgets.ts `budgetMarkerKey`): budget leases are granted only while it exists. */
  markerKey: string;
}

/**
 * A request's share of one lease (a slot, or a budget reservation) while it runs. When its lease
 * goes back to Redis first, the hold becomes direct: a budget reservation counted on the counter,
 * a slot held in the slot set under `member`.
 */
export interface Hold {
  readonly resource: Resource;
  readonly amount: number;
  lease: Lease | null;
  /** Slots held directly: the slot set's member to remove at the end (null: none is held). */
  member: string | null;
}

/** Why a request could not be admitted. */
export type Refusal =
  | { reason: "exhausted"; resource: Resource; retryAfterMs: number }
  /** A budget could not be checked: Redis is unreachable, or its counters are not seeded. */
  | { reason: "unavailable"; resource: Resource };

/** The outcome of `take`. */
export type Taken =
  | {
      ok: true;
      /** "local": admitted from this isolate's leases; "redis": waited on a round trip. */
      path: "local" | "redis";
      holds: Hold[];
      /** Rate or slot resources that were admitted unchecked because Redis failed (fail open). */
      degraded: Resource[];
    }
  | ({ ok: false } & Refusal);

// Of what is left after a need, a grant takes at most this share, divided among the isolates that
// asked lately: leases are large while much remains and shrink to the need alone near the limit.
const SHARE = 0.5;
/** What a lease takes for its isolate's demand (beyond three needs' worth) is at most this share of the limit. */
const MAX_SURPLUS_OF_LIMIT = 0.1;
/** A lease aims to cover this much of its isolate's demand… */
const TARGET_SECONDS = 2;
/** …and is refilled when what is left would last less than this many round trips (at least 0.5 s). */
const REFILL_ROUND_TRIPS = 4;
/** Demand is measured over windows of at least this long. */
const DEMAND_WINDOW_MS = 100;
/** After a failed round trip, leases are not refilled and uncovered needs do not ask Redis for this long. */
const BACKOFF_MS = 1_000;
/** Redis takes back the lease of an isolate that died this long after its lease's end. */
const RECLAIM_GRACE_MS = 60_000;
/** A slot held directly (a request that outlived its lease) frees itself after this long: the longest stream. */
const DIRECT_SLOT_MS = 10 * 60_000;
/** One reaper run lasts at most this long (a request's waitUntil is bounded); the next request starts another. */
const REAPER_RUN_MS = 20_000;

/** This isolate, as lease holders are named in Redis (no ':' in it); drawn at first use (Workers allow no randomness at global scope). */
let isolateName = "";
let leaseSeq = 0;

function nextHolder(): string {
  if (isolateName === "") isolateName = crypto.randomUUID().replaceAll("-", "");
  return `${isolateName}.${++leaseSeq}`;
}

/** One resource's capacity held by this isolate. */
export class Lease {
  readonly holder = nextHolder();
  /** Units this isolate may still admit (never below zero: usage beyond it goes to the counter, releaseHold). */
  free = 0;
  /** Requests in flight that hold part of this lease (slots and budgets). */
  readonly holds = new Set<Hold>();
  /** Σ amount of `holds`. */
  held = 0;
  /** Whether Redis holds a record of this lease (as far as this isolate knows). */
  hasRecord = false;
  /** Local admissions stop at this time (unix ms); a grant moves it. */
  expiresAt = 0;
  lastUsedAt = 0;
  /** Set once the lease is being returned: nothing more is admitted from it. */
  returned = false;
  refilling = false;
  /** Synchronous calls on their way for this lease. */
  calls = 0;
  /** Demand estimate (units per second), from what was used in windows of at least DEMAND_WINDOW_MS. */
  demand = 0;
  windowUsed = 0;
  windowStart = 0;
  lastNeed = 1;
  /** Grants received so far (a refusal is retried when one arrived meanwhile). */
  grants = 0;
  /** Rate: tokens left in the bucket when last seen; slots and budgets: units used. And when. */
  seen = 0;
  seenAt = 0;

  readonly resource: Resource;

  constructor(resource: Resource) {
    this.resource = resource;
  }
}

/** Leases of this isolate by resource (a changed limit is a different lease). */
const leases = new Map<string, Lease>();
/** Rate resources Redis refused lately: refused again locally until the time (unix ms); at most MAX_BLOCKED. */
const MAX_BLOCKED = 10_000;
const blockedUntil = new Map<string, number>();
/** Returned leases whose RETURN has not landed yet, with the writes that must follow it. */
const pendingReturns = new Map<Lease, { inflight: number; after: ((batch: RedisBatch) => void)[] }>();
let backoffUntil = 0;
let reaper: { startedAt: number } | null = null;
let refillQueue = new Set<Lease>();
let refillRunning = false;
/** Round-trip time of lease calls (EWMA, ms): refills start early enough to land before a lease runs dry. */
let rttMs = 5;

// Resources are memoised with the identity they belong to (admission.ts), so their ids are too.
const ids = new WeakMap<Resource, string>();

function leaseId(r: Resource): string {
  let id = ids.get(r);
  if (id === undefined) {
    id = `${r.key}|${r.limit}|${r.extra}`;
    ids.set(r, id);
  }
  return id;
}

function liveLease(r: Resource): Lease | undefined {
  const lease = leases.get(leaseId(r));
  return lease && !lease.returned ? lease : undefined;
}

function leaseFor(r: Resource): Lease {
  const existing = liveLease(r);
  if (existing) return existing;
  const lease = new Lease(r);
  leases.set(leaseId(r), lease);
  return lease;
}

function holdsSlots(r: Resource): boolean {
  return r.kind !== "rate";
}

// `resource` is the caller's object for the lease's resource: holds and refusals name the caller's
// objects (admission.ts looks its labels up by them), while a lease keeps the object of whichever
// plan created it (another identity object of the same key, or another key sharing a layer).
function admitLocally(lease: Lease, amount: number, now: number, resource: Resource): Hold | null {
  lease.free -= amount;
  noteDemand(lease, amount, now);
  lease.lastUsedAt = now;
  lease.lastNeed = Math.max(1, amount);
  if (!holdsSlots(lease.resource)) return null;
  const hold: Hold = { resource, amount, lease, member: null };
  lease.holds.add(hold);
  lease.held += amount;
  return hold;
}

/** Gives back what `admitLocally` took, when another need of the same request was refused. */
function undoLocal(lease: Lease, amount: number, hold: Hold | null): void {
  lease.free += amount;
  lease.windowUsed -= amount;
  if (hold) {
    lease.holds.delete(hold);
    lease.held -= amount;
  }
}

/**
 * Counts what a lease admitted, and updates its demand estimate once a window has passed. (Measured
 * by time, not between grants: under a burst, grants come milliseconds apart and would make the
 * demand look small, so leases would stay small and the burst would keep waiting on Redis.)
 */
function noteDemand(lease: Lease, amount: number, now: number): void {
  if (lease.windowStart === 0) lease.windowStart = now;
  lease.windowUsed += amount;
  const elapsed = now - lease.windowStart;
  if (elapsed < DEMAND_WINDOW_MS) return;
  const rate = (lease.windowUsed * 1000) / elapsed;
  lease.demand = lease.demand === 0 ? rate : 0.5 * lease.demand + 0.5 * rate;
  lease.windowStart = now;
  lease.windowUsed = 0;
}

/** The demand estimate, or what the current window already shows when that is more (a lease ramping up). */
function demandOf(lease: Lease, now: number): number {
  const elapsed = now - lease.windowStart;
  if (lease.windowStart === 0 || elapsed < 20) return lease.demand;
  return Math.max(lease.demand, (lease.windowUsed * 1000) / Math.max(50, elapsed));
}

/** How much to ask for: the need, plus about TARGET_SECONDS of this isolate's demand. */
function wantFor(lease: Lease, need: number, ctx: LeaseContext): number {
  if (ctx.leaseMs <= 0) return need;
  const target = Math.ceil(demandOf(lease, Date.now()) * Math.min(TARGET_SECONDS, ctx.leaseMs / 1000));
  // Demand beyond three needs' worth takes at most a tenth of the limit: with many isolates bursting
  // on one small limit, what one of them holds would otherwise refuse the others until it goes idle.
  const base = 3 * Math.max(need, lease.lastNeed);
  return need + Math.max(base, Math.min(target, Math.floor(lease.resource.limit * MAX_SURPLUS_OF_LIMIT)));
}

/** Adds a grant to a lease; returns false when Redis had taken the lease's record back (its free capacity is gone). */
function applyGrant(lease: Lease, grant: number, existed: boolean, seen: number, now: number, ctx: LeaseContext): boolean {
  const kept = !(lease.hasRecord && !existed);
  lease.grants++;
  if (!kept) {
    // Redis took the record back while this isolate was away: its free capacity is gone, and its
    // requests in flight are now direct (the script counted their budget reservations again; their
    // slots were freed, as when Redis is down).
    lease.free = 0;
    for (const hold of lease.holds) {
      hold.lease = null;
      hold.member = null;
    }
    lease.holds.clear();
    lease.held = 0;
    ctx.log("lease_reclaimed", { resource: lease.resource.key });
  }
  lease.free += grant;
  lease.hasRecord = true;
  lease.expiresAt = now + ctx.leaseMs;
  lease.seen = seen;
  lease.seenAt = now;
  return kept;
}

interface Call {
  lease: Lease;
  /** The caller's object for the lease's resource (refills: the lease's own). */
  resource: Resource;
  /** What the call asks Redis for at least, and at most. */
  need: number;
  want: number;
  /** Synchronous calls: what the lease already held towards the request, and the request's whole need. */
  partial: number;
  amount: number;
}

type CallResult =
  | { kind: "granted"; results: { grant: number; existed: boolean; seen: number }[] }
  | { kind: "refused"; index: number; retryAfterMs: number }
  | { kind: "unseeded"; index: number }
  | { kind: "failed" };

// Module scope so each client computes the script's SHA once; `exec` runs EVALSHA and falls back to EVAL.
const acquireScripts = new WeakMap<Redis, { exec(keys: string[], args: string[]): Promise<number[]> }>();

function acquireScript(redis: Redis): { exec(keys: string[], args: string[]): Promise<number[]> } {
  let script = acquireScripts.get(redis);
  if (!script) {
    script = redis.createScript<number[]>(ACQUIRE);
    acquireScripts.set(redis, script);
  }
  return script;
}

async function callAcquire(ctx: LeaseContext, calls: Call[], now: number, deadlineMs: number): Promise<CallResult> {
  const keys = [ctx.markerKey];
  const askWindow = Math.max(2_000, 2 * ctx.leaseMs);
  const args = [String(now), String(askWindow), String(ctx.leaseMs + RECLAIM_GRACE_MS), String(SHARE)];
  for (const call of calls) {
    const r = call.lease.resource;
    keys.push(r.key, `${r.key}:lease`);
    args.push(
      String(KIND[r.kind]),
      String(r.limit),
      String(call.need),
      String(call.want),
      String(r.extra),
      call.lease.hasRecord ? "1" : "0",
      String(call.lease.held),
      call.lease.holder,
    );
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const started = Date.now();
  try {
    const raw = await Promise.race([
      acquireScript(ctx.redis).exec(keys, args),
      new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), deadlineMs))),
    ]);
    if (raw === null) return { kind: "failed" };
    rttMs = 0.8 * rttMs + 0.2 * (Date.now() - started);
    const status = Number(raw[0]);
    if (status < 0) return { kind: "unseeded", index: -status - 1 };
    if (status > 0) return { kind: "refused", index: status - 1, retryAfterMs: Number(raw[(status - 1) * ACQUIRE_RESULTS_PER_RESOURCE + 3] ?? 0) };
    return {
      kind: "granted",
      results: calls.map((_, i) => ({
        grant: Number(raw[i * ACQUIRE_RESULTS_PER_RESOURCE + 1] ?? 0),
        existed: Number(raw[i * ACQUIRE_RESULTS_PER_RESOURCE + 2] ?? 0) === 1,
        seen: Number(raw[i * ACQUIRE_RESULTS_PER_RESOURCE + 3] ?? 0),
      })),
    };
  } catch (err) {
    ctx.log("redis_unavailable", { during: "lease_acquire", error: String(err) });
    return { kind: "failed" };
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}

/**
 * Takes what a request needs: from this isolate's leases when they cover it (no round trip), else
 * one round trip for what they do not cover. All or nothing: a refusal gives back what was taken.
 * Redis failing: rate and slot needs are admitted unchecked (`degraded`), budget needs are refused
 * as unavailable, unless a lease covers them.
 */
export async function take(ctx: LeaseContext, needs: Need[]): Promise<Taken> {
  const now = Date.now();
  for (const need of needs) {
    const r = need.resource;
    if (r.limit <= 0 && r.kind !== "budget") return { ok: false, reason: "exhausted", resource: r, retryAfterMs: 60_000 };
    if (r.kind === "rate") {
      const until = blockedUntil.get(r.key);
      if (until !== undefined) {
        const lease = liveLease(r);
        const covered = lease !== undefined && lease.expiresAt > now && lease.free >= need.amount;
        if (until > now && !covered) return { ok: false, reason: "exhausted", resource: r, retryAfterMs: until - now };
        if (until <= now) blockedUntil.delete(r.key);
      }
    }
  }
  for (let attempt = 1; ; attempt++) {
    const taken = await takeOnce(ctx, needs);
    if (taken.ok || taken.reason !== "exhausted" || attempt === 3) return taken;
    // Refused while a call of this isolate's own was bringing the capacity in (a burst of requests
    // that all missed the lease at once): try again when that lease now covers the need.
    // Or while a refill of that lease was on its way: the capacity it brings may make the need fit.
    const need = needs.find((n) => n.resource === taken.resource)?.amount;
    const lease = liveLease(taken.resource);
    if (!lease || need === undefined) return taken;
    const grants = lease.grants;
    const refilling = lease.refilling;
    for (let waited = 0; lease.refilling && waited < 2 * ctx.timeoutMs; waited += 5) await new Promise((resolve) => setTimeout(resolve, 5));
    const covered = lease.expiresAt > Date.now() && lease.free >= need;
    if (!covered && !(refilling && lease.grants > grants)) return taken;
  }
}

async function takeOnce(ctx: LeaseContext, needs: Need[]): Promise<Taken> {
  const now = Date.now();
  const holds: Hold[] = [];
  const local: { lease: Lease; amount: number; hold: Hold | null }[] = [];
  const missing: Need[] = [];
  for (const need of needs) {
    const lease = liveLease(need.resource);
    if (lease && lease.expiresAt > now && lease.free >= need.amount) {
      const hold = admitLocally(lease, need.amount, now, need.resource);
      local.push({ lease, amount: need.amount, hold });
      if (hold) holds.push(hold);
    } else {
      missing.push(need);
    }
  }
  const undoAll = () => {
    for (const l of local) undoLocal(l.lease, l.amount, l.hold);
  };
  if (missing.length === 0) {
    afterAdmission(ctx, local.map((l) => l.lease), now);
    return { ok: true, path: "local", holds, degraded: [] };
  }

  const degraded: Resource[] = [];
  const failOpen = (): Taken => {
    const budget = missing.find((n) => n.resource.kind === "budget");
    if (budget) {
      undoAll();
      return { ok: false, reason: "unavailable", resource: budget.resource };
    }
    for (const n of missing) degraded.push(n.resource);
    afterAdmission(ctx, local.map((l) => l.lease), now);
    return { ok: true, path: "redis", holds, degraded };
  };
  if (now < backoffUntil) return failOpen();

  // While a call for a lease is on its way, others ask for their need alone: a burst of requests
  // that all miss the lease at once must not each take a lease's worth.
  // What a live lease still holds counts towards the need (set aside while the call is out): capacity
  // split between a lease and Redis, neither of which covers the need alone, is still usable.
  const calls: Call[] = missing.map((n) => {
    const lease = leaseFor(n.resource);
    const partial = lease.expiresAt > now ? Math.max(0, Math.min(n.amount - 1, Math.floor(lease.free))) : 0;
    lease.free -= partial;
    const need = n.amount - partial;
    const want = lease.calls > 0 || lease.refilling ? need : Math.max(need, wantFor(lease, n.amount, ctx) - partial);
    return { lease, resource: n.resource, need, want, partial, amount: n.amount };
  });
  const restorePartials = () => {
    for (const call of calls) call.lease.free += call.partial;
  };
  // A lease with a call on its way is not returned meanwhile (the grant must land on a lease that lives).
  for (const call of calls) call.lease.calls++;
  const result = await callAcquire(ctx, calls, now, ctx.timeoutMs);
  for (const call of calls) call.lease.calls--;
  const after = Date.now();
  switch (result.kind) {
    case "failed":
      restorePartials();
      backoffUntil = after + BACKOFF_MS;
      return failOpen();
    case "unseeded": {
      restorePartials();
      undoAll();
      const call = calls[result.index];
      if (!call) throw new Error("lease script returned an index out of range");
      return { ok: false, reason: "unavailable", resource: call.resource };
    }
    case "refused": {
      restorePartials();
      undoAll();
      const call = calls[result.index];
      if (!call) throw new Error("lease script returned an index out of range");
      const r = call.resource;
      // Refused again from the isolate until the bucket's next refill (at most a second away), as
      // @upstash/ratelimit's blocked-identifier cache did.
      if (r.kind === "rate") {
        // Entries are dropped when read after their time; a flood of distinct refused keys must not grow it for ever.
        if (blockedUntil.size >= MAX_BLOCKED) blockedUntil.clear();
        blockedUntil.set(r.key, after + Math.min(result.retryAfterMs, 1_000));
      }
      return { ok: false, reason: "exhausted", resource: r, retryAfterMs: result.retryAfterMs };
    }
    case "granted": {
      let short: Call | null = null;
      calls.forEach((call, i) => {
        const res = result.results[i];
        if (!res) return;
        // A lease Redis had taken back lost the part set aside with it.
        if (applyGrant(call.lease, res.grant, res.existed, res.seen, after, ctx)) call.lease.free += call.partial;
        if (call.lease.free < call.amount) short = call;
      });
      if (short !== null) {
        // Only after a lease was taken back: what was granted stays in the leases for later requests.
        undoAll();
        return { ok: false, reason: "exhausted", resource: (short as Call).resource, retryAfterMs: 1_000 };
      }
      for (const call of calls) {
        const hold = admitLocally(call.lease, call.amount, after, call.resource);
        if (hold) holds.push(hold);
      }
      afterAdmission(ctx, [...local.map((l) => l.lease), ...calls.map((c) => c.lease)], after);
      return { ok: true, path: "redis", holds, degraded };
    }
  }
}

/** Refills the leases that run low and makes sure idle ones go back. */
function afterAdmission(ctx: LeaseContext, used: Lease[], now: number): void {
  if (ctx.leaseMs > 0 && now >= backoffUntil) {
    const lowSeconds = Math.max(0.5, (REFILL_ROUND_TRIPS * rttMs) / 1000);
    for (const lease of used) {
      if (lease.refilling || lease.returned) continue;
      const low = Math.max(2 * lease.lastNeed, demandOf(lease, now) * lowSeconds);
      if (lease.free < low || lease.expiresAt - now < ctx.leaseMs / 2) {
        lease.refilling = true;
        refillQueue.add(lease);
      }
    }
    if (refillQueue.size > 0 && !refillRunning) {
      refillRunning = true;
      ctx.waitUntil(runRefills(ctx).finally(() => (refillRunning = false)));
    }
  }
  ensureReaper(ctx);
}

async function runRefills(ctx: LeaseContext): Promise<void> {
  while (refillQueue.size > 0) {
    const batch = [...refillQueue].filter((l) => !l.returned);
    refillQueue = new Set();
    if (batch.length === 0) return;
    const now = Date.now();
    const calls: Call[] = batch.map((lease) => ({ lease, resource: lease.resource, need: 0, want: Math.max(0, wantFor(lease, lease.lastNeed, ctx) - Math.max(0, lease.free)), partial: 0, amount: 0 }));
    const result = await callAcquire(ctx, calls, now, ctx.timeoutMs * 2);
    const after = Date.now();
    if (result.kind === "granted") {
      calls.forEach((call, i) => {
        const res = result.results[i];
        if (res) applyGrant(call.lease, res.grant, res.existed, res.seen, after, ctx);
      });
    } else if (result.kind === "unseeded") {
      // A budget whose counters are not seeded: its lease is left to end; its next request is refused.
      const dropped = calls[result.index]?.lease;
      if (dropped) dropped.expiresAt = 0;
      for (const call of calls) if (call.lease !== dropped) refillQueue.add(call.lease);
    } else if (result.kind === "failed") {
      // The grant may still land: the record then holds more than this isolate knows, which its
      // return gives back (RETURN reads the record). Leases keep serving until they end.
      backoffUntil = after + BACKOFF_MS;
    }
    for (const lease of batch) lease.refilling = refillQueue.has(lease);
  }
}

function ensureReaper(ctx: LeaseContext): void {
  const now = Date.now();
  if (reaper && now - reaper.startedAt < REAPER_RUN_MS + 5_000) return;
  const run = { startedAt: now };
  reaper = run;
  ctx.waitUntil(
    reap(ctx, run)
      .catch((err: unknown) => ctx.log("lease_reaper_failed", { error: String(err) }))
      .finally(() => {
        if (reaper === run) reaper = null;
      }),
  );
}

/** Returns leases that ended or went idle, until none is left (or the run's time is up). */
async function reap(ctx: LeaseContext, run: { startedAt: number }): Promise<void> {
  for (;;) {
    const now = Date.now();
    const due: Lease[] = [];
    let next = Infinity;
    for (const lease of leases.values()) {
      if (lease.refilling || lease.calls > 0) {
        next = Math.min(next, now + 50);
        continue;
      }
      const end = Math.min(lease.expiresAt, lease.lastUsedAt + ctx.idleMs);
      if (end <= now) due.push(lease);
      else next = Math.min(next, end);
    }
    if (due.length > 0 || (pendingReturns.size > 0 && now >= backoffUntil)) await returnLeases(ctx, due);
    if (pendingReturns.size > 0) next = Math.min(next, Math.max(backoffUntil, Date.now() + 100));
    if (next === Infinity || now - run.startedAt > REAPER_RUN_MS) return;
    await new Promise((resolve) => setTimeout(resolve, Math.max(10, next - Date.now())));
  }
}

// Module scope: one SHA computation per script text.
const RETURN_SCRIPT = RETURN;

/**
 * Gives leases back to Redis in one round trip. A lease is marked returned at once (nothing more is
 * admitted from it); its requests in flight become direct holds. A return that fails is retried.
 */
async function returnLeases(ctx: LeaseContext, due: Lease[]): Promise<void> {
  const now = Date.now();
  for (const lease of due) {
    lease.returned = true;
    if (leases.get(leaseId(lease.resource)) === lease) leases.delete(leaseId(lease.resource));
    if (!lease.hasRecord) continue;
    let n = 0;
    for (const hold of lease.holds) {
      hold.lease = null;
      if (lease.resource.kind === "slots") hold.member = `r:${lease.holder}:${++n}`;
    }
    pendingReturns.set(lease, { inflight: lease.resource.kind === "slots" ? n : lease.held, after: [] });
  }
  if (pendingReturns.size === 0) return;
  const sending = [...pendingReturns];
  const pipe = ctx.redis.pipeline();
  for (const [lease, pending] of sending) {
    const r = lease.resource;
    pipe.eval(RETURN_SCRIPT, [r.key, `${r.key}:lease`], [
      KIND[r.kind],
      lease.holder,
      r.limit,
      now,
      r.kind === "rate" ? r.extra : 0,
      r.kind === "rate" ? Math.max(0, Math.floor(lease.free)) : 0,
      pending.inflight,
      DIRECT_SLOT_MS,
    ]);
  }
  try {
    await pipe.exec();
  } catch (err) {
    backoffUntil = Date.now() + BACKOFF_MS;
    ctx.log("redis_unavailable", { during: "lease_return", error: String(err) });
    return;
  }
  // Writes that had to wait for the return (a direct slot's request ended while it was on its way).
  const followUp = ctx.redis.pipeline();
  let commands = 0;
  for (const [lease, pending] of sending) {
    pendingReturns.delete(lease);
    for (const write of pending.after) {
      write(followUp);
      commands++;
    }
  }
  if (commands > 0) await followUp.exec().catch(() => null);
}

/**
 * Ends a request's hold. `actual` is what it really used of a budget (0 when it failed or for a
 * slot). Adds the Redis writes this needs to `batch`, or returns the SETTLE arguments of a budget
 * hold (the caller runs one SETTLE for all of a request's budgets).
 */
export function releaseHold(hold: Hold, actual: number, batch: RedisBatch): Settlement | null {
  const r = hold.resource;
  const lease = hold.lease;
  if (lease) {
    lease.holds.delete(hold);
    lease.held -= hold.amount;
    hold.lease = null;
    if (r.kind === "slots") {
      lease.free += hold.amount;
      return null;
    }
    lease.free += hold.amount - actual;
    // Usage beyond the reservation and the lease's free capacity is not the lease's to absorb: it is
    // charged to the counter, so Redis (and every other isolate) sees the budget as spent at once.
    const beyond = Math.max(0, -lease.free);
    lease.free += beyond;
    if (actual === 0) return null;
    return { key: r.key, meta: `${r.key}:lease`, mode: 1, holder: lease.holder, actual, reserved: beyond };
  }
  if (r.kind === "slots") {
    const member = hold.member;
    hold.member = null;
    if (member === null) return null;
    const pending = [...pendingReturns].find(([l]) => member.startsWith(`r:${l.holder}:`));
    if (pending) pending[1].after.push((b) => b.zrem(r.key, member));
    else batch.zrem(r.key, member);
    return null;
  }
  if (actual === hold.amount) return null;
  return { key: r.key, meta: `${r.key}:lease`, mode: 2, holder: "-", actual, reserved: hold.amount };
}

/** Takes up to `amount` from this isolate's live lease of `r` (usage beyond an estimate); returns how much it took. */
export function chargeLease(r: Resource, amount: number): number {
  const lease = liveLease(r);
  if (!lease) return 0;
  const taken = Math.min(amount, Math.max(0, Math.floor(lease.free)));
  lease.free -= taken;
  return taken;
}

/** What this isolate knows of a rate resource, for OpenAI's x-ratelimit headers: units left and ms until full. */
export function rateView(r: Resource, now: number): { remaining: number; fullInMs: number } | null {
  const lease = leases.get(leaseId(r));
  if (!lease || lease.seenAt === 0) return null;
  const refilled = Math.floor((now - lease.seenAt) / 1_000) * r.extra;
  const remaining = Math.max(0, Math.min(r.limit, Math.floor(lease.seen + refilled + Math.max(0, lease.free))));
  const fullInMs = r.extra > 0 ? Math.ceil((r.limit - remaining) / r.extra) * 1_000 : 0;
  return { remaining, fullInMs };
}

/** Forgets every lease and cache of this isolate without returning anything (tests). */
export function resetLeases(): void {
  leases.clear();
  blockedUntil.clear();
  pendingReturns.clear();
  refillQueue = new Set();
  backoffUntil = 0;
}
