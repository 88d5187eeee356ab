import type { Redis } from "@upstash/redis/cloudflare";
import type { KeyIdentity } from "../auth/identity.ts";
import { ApiError } from "../errors.ts";
import type { RoutingSnapshot } from "../routing/snapshot.ts";
import { countEvent } from "../platform/metrics.ts";
import type { Settings } from "../settings.ts";
import { budgetCounter, budgetMarkerKey, describeBudget, type BudgetEntry, type Cost } from "./budgets.ts";
import { chargeLease, rateView, releaseHold, take, type LeaseContext, type Need, type Resource, type Taken } from "./leases.ts";
import { chargeBucket, formatDuration, type RateKind } from "./rate.ts";
import { LAYERS, layerId, type AdmissionSubject, type Layer, type LayerLimits } from "./types.ts";
import { WriteBatch } from "./write-batch.ts";

/** The effective limits of each layer: database overrides over configured defaults. */
export function effectiveLimits(settings: Settings, identity: KeyIdentity, snapshot: RoutingSnapshot): Record<Layer, LayerLimits> {
  const pick = (layer: Layer, override: Partial<LayerLimits> | null | undefined): LayerLimits => {
    const base = settings.limitDefaults[layer];
    return {
      rpm: override?.rpm ?? base.rpm,
      tpm: override?.tpm ?? base.tpm,
      concurrency: override?.concurrency ?? base.concurrency,
    };
  };
  return {
    global: pick("global", snapshot.globalLimits),
    tenant: pick("tenant", identity.overrides.tenant),
    environment: pick("environment", identity.overrides.environment),
    key: pick("key", identity.overrides.key),
  };
}

// Pricing lives in pricing.ts; re-exported here for the handler, which admits with these.
export { maxCost, rateTokens } from "./pricing.ts";

/** An admitted request: response headers, and `finish` to settle budgets and free the slots. */
export interface Admission {
  headers: Record<string, string>;
  /** "local": admitted from the isolate's leases with no round trip; "redis": waited on one. */
  path: "local" | "redis";
  /**
   * Settles budgets to the real cost (null: the request failed, give everything back), charges
   * tokens per minute for usage beyond the admission estimate, and frees the slots; with a batch,
   * only adds the Redis writes this needs to it (the caller executes it).
   */
  finish(actual: Cost | null, batch?: WriteBatch): Promise<void>;
}

/**
 * Refuses, with a 400 that says so, a request whose token estimate exceeds a whole minute's tokens at
 * some layer: it could never be admitted, so a 429 asking to retry would be a lie. (A zero limit is
 * an operator's block and stays a 429.)
 */
function checkFitsTokenLimits(subject: AdmissionSubject, rateTokens: number, limitField: string): void {
  for (const layer of LAYERS) {
    const tpm = subject.limits[layer].tpm;
    if (tpm === null || tpm <= 0 || rateTokens <= tpm) continue;
    throw new ApiError(
      "invalid_value",
      `This request counts as ${rateTokens} tokens (an estimate of its input plus the most output it allows), more than the ${layer}'s limit of ${tpm} tokens per minute, so it can never be admitted. ${limitField === "input" ? "Send less input per request." : limitField === "file" ? "Send shorter audio per request (split the file)." : `Lower '${limitField}' or n, or shorten the prompt.`}`,
      { param: limitField, refusal: { layer, reason: "over_tpm" } },
    );
  }
}

/** What a request's admission needs from its callers. */
export interface AdmissionDeps {
  redis: Redis;
  settings: Settings;
  log: (event: string, fields: Record<string, unknown>) => void;
  requestId: string;
  waitUntil(p: Promise<unknown>): void;
}

/** What a resource stands for, to name it in a refusal or a header. */
type Label = { type: "rate"; layer: Layer; kind: RateKind } | { type: "slots"; layer: Layer } | { type: "budget"; budget: BudgetEntry };

/** Layers with an in-flight cap. */
const SLOT_LAYERS = ["tenant", "key"] as const satisfies readonly Layer[];

/** The resources of a subject and its budgets, memoised per identity object (cached by the isolate for KEY_CACHE_ISOLATE_SECONDS). */
interface Plan {
  rate: { resource: Resource; label: Label & { type: "rate" } }[];
  slots: { resource: Resource; label: Label & { type: "slots" } }[];
  budgets: { resource: Resource; label: Label & { type: "budget" } }[];
  /** Budget periods end: the plan is rebuilt for a new period's counters. */
  validUntil: number;
}
const plans = new WeakMap<KeyIdentity, { limits: Record<Layer, LayerLimits>; prefix: string; plan: Plan }>();

function samePlanLimits(a: Record<Layer, LayerLimits>, b: Record<Layer, LayerLimits>): boolean {
  return LAYERS.every((l) => a[l].rpm === b[l].rpm && a[l].tpm === b[l].tpm && a[l].concurrency === b[l].concurrency);
}

function planFor(prefix: string, identity: KeyIdentity, subject: AdmissionSubject, now: number): Plan {
  const memo = plans.get(identity);
  if (memo && memo.prefix === prefix && memo.plan.validUntil > now && samePlanLimits(memo.limits, subject.limits)) return memo.plan;
  const plan: Plan = { rate: [], slots: [], budgets: [], validUntil: Infinity };
  for (const layer of LAYERS) {
    const { rpm, tpm } = subject.limits[layer];
    const id = layerId(subject, layer);
    if (rpm !== null) plan.rate.push({ resource: { key: `${prefix}rl:req:${id}`, kind: "rate", limit: rpm, extra: rpm / 60 }, label: { type: "rate", layer, kind: "requests" } });
    if (tpm !== null) plan.rate.push({ resource: { key: `${prefix}rl:tok:${id}`, kind: "rate", limit: tpm, extra: tpm / 60 }, label: { type: "rate", layer, kind: "tokens" } });
  }
  for (const layer of SLOT_LAYERS) {
    const cap = subject.limits[layer].concurrency;
    if (cap !== null) plan.slots.push({ resource: { key: `${prefix}cc:${layerId(subject, layer)}`, kind: "slots", limit: cap, extra: 0 }, label: { type: "slots", layer } });
  }
  const date = new Date(now);
  for (const budget of identity.budgets) {
    const counter = budgetCounter(prefix, budget, date);
    plan.budgets.push({ resource: { key: counter.key, kind: "budget", limit: budget.amount, extra: counter.ttlSeconds }, label: { type: "budget", budget } });
    if (budget.period !== "total") plan.validUntil = Math.min(plan.validUntil, now + (counter.ttlSeconds - 86_400) * 1000);
  }
  plans.set(identity, { limits: subject.limits, prefix, plan });
  return plan;
}

function budgetAmount(budget: BudgetEntry, cost: Cost): number {
  return budget.kind === "tokens" ? cost.tokens : budget.kind === "spend" ? cost.spend : cost.requests;
}

/** OpenAI's x-ratelimit-{limit,remaining,reset}-{requests,tokens} headers for the tightest layer of each dimension this isolate knows of. */
function rateHeaders(plan: Plan, degraded: Resource[], now: number, refused?: Resource): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const kind of ["requests", "tokens"] as const) {
    let tightest: { limit: number; remaining: number; fullInMs: number } | null = null;
    for (const { resource, label } of plan.rate) {
      if (label.kind !== kind || degraded.includes(resource)) continue;
      const view = resource === refused ? { remaining: 0, fullInMs: Math.ceil(resource.limit / resource.extra) * 1000 } : rateView(resource, now);
      if (!view) continue;
      const candidate = { limit: resource.limit, remaining: view.remaining, fullInMs: view.fullInMs };
      if (tightest === null || candidate.remaining < tightest.remaining || (candidate.remaining === tightest.remaining && candidate.fullInMs > tightest.fullInMs)) {
        tightest = candidate;
      }
    }
    if (tightest === null) continue;
    headers[`x-ratelimit-limit-${kind}`] = String(tightest.limit);
    headers[`x-ratelimit-remaining-${kind}`] = String(tightest.remaining);
    headers[`x-ratelimit-reset-${kind}`] = formatDuration(tightest.fullInMs);
  }
  return headers;
}

/**
 * Admits a request at every layer: requests and tokens per minute (fail open), requests in flight
 * (fail open) and budgets (fail closed), from this isolate's capacity leases when they cover it (no
 * round trip), else in one atomic round trip to Redis that takes everything or nothing
 * (limits/leases.ts, docs/limits.md). A request larger than a layer's tokens per minute is a 400
 * before anything is taken.
 */
export async function admit(deps: AdmissionDeps, identity: KeyIdentity, snapshot: RoutingSnapshot, costs: { max: Cost; rateTokens: number; limitField?: string }): Promise<Admission> {
  const { redis, settings } = deps;
  const subject: AdmissionSubject = {
    tenantId: identity.tenantId,
    environmentId: identity.environmentId,
    keyId: identity.keyId,
    limits: effectiveLimits(settings, identity, snapshot),
  };
  const rateTokens = Math.max(0, Math.ceil(costs.rateTokens));
  checkFitsTokenLimits(subject, rateTokens, costs.limitField ?? "max_tokens");
  const prefix = settings.redisPrefix;
  const now = Date.now();
  const plan = planFor(prefix, identity, subject, now);
  const needs: Need[] = [];
  const labels = new Map<Resource, Label>();
  for (const { resource, label } of plan.rate) {
    needs.push({ resource, amount: label.kind === "requests" ? 1 : rateTokens });
    labels.set(resource, label);
  }
  for (const { resource, label } of plan.slots) {
    needs.push({ resource, amount: 1 });
    labels.set(resource, label);
  }
  for (const { resource, label } of plan.budgets) {
    const amount = budgetAmount(label.budget, costs.max);
    if (amount <= 0) continue;
    needs.push({ resource, amount });
    labels.set(resource, label);
  }
  const ctx: LeaseContext = {
    redis,
    waitUntil: (p) => deps.waitUntil(p),
    log: deps.log,
    leaseMs: settings.leaseMs,
    idleMs: settings.leaseIdleMs,
    timeoutMs: settings.limitsTimeoutMs,
    markerKey: budgetMarkerKey(prefix),
  };
  const taken: Taken = needs.length === 0 ? { ok: true, path: "local", holds: [], degraded: [] } : await take(ctx, needs);
  if (!taken.ok) {
    const label = labels.get(taken.resource);
    if (taken.reason === "unavailable" || !label) {
      deps.log("budgets_fail_closed", { requestId: deps.requestId });
      countEvent("switchyard_budgets_fail_closed_total");
      throw new ApiError("dependency_unavailable", "Budgets cannot be checked right now, so the request was not admitted. Retry in a few seconds.", {
        headers: { "retry-after": "2" },
        refusal: { layer: "budget", reason: "unavailable" },
      });
    }
    const headers = rateHeaders(plan, [], Date.now(), label.type === "rate" ? taken.resource : undefined);
    if (label.type === "rate") {
      const limit = taken.resource.limit;
      const retryAfter = Math.max(1, Math.ceil(taken.retryAfterMs / 1000));
      throw new ApiError("rate_limit_exceeded", `Rate limit reached for the ${label.layer} (${label.kind} per minute: limit ${limit}). Retry after ${retryAfter} s.`, {
        headers: { ...headers, "retry-after": String(retryAfter) },
        type: label.kind,
        refusal: { layer: label.layer, reason: label.kind === "requests" ? "rpm" : "tpm" },
      });
    }
    if (label.type === "slots") {
      throw new ApiError("rate_limit_exceeded", `Too many requests in flight for the ${label.layer} (limit ${taken.resource.limit}). Retry when one of them finishes.`, {
        headers: { ...headers, "retry-after": "1" },
        refusal: { layer: label.layer, reason: "concurrency" },
      });
    }
    throw new ApiError("insufficient_quota", `This request could exceed ${describeBudget(label.budget)}. Lower max_tokens, or raise the budget.`, {
      refusal: { layer: "budget", reason: "budget" },
    });
  }
  countEvent("switchyard_admissions_total", { path: taken.path });
  const degradedRate = taken.degraded.some((r) => r.kind === "rate");
  const degradedSlots = taken.degraded.some((r) => r.kind === "slots");
  if (degradedRate || degradedSlots) {
    deps.log("limits_fail_open", { requestId: deps.requestId, rate: degradedRate, concurrency: degradedSlots });
    if (degradedRate) countEvent("switchyard_limits_fail_open_total", { check: "rate" });
    if (degradedSlots) countEvent("switchyard_limits_fail_open_total", { check: "concurrency" });
  }
  const holds = taken.holds;
  let finished = false;
  return {
    headers: rateHeaders(plan, taken.degraded, Date.now()),
    path: taken.path,
    async finish(actual, batch) {
      if (finished) return;
      finished = true;
      const writes = batch ?? new WriteBatch(redis.pipeline());
      const pipe = writes.pipe;
      for (const hold of holds) {
        const label = labels.get(hold.resource);
        const used = actual && label?.type === "budget" ? budgetAmount(label.budget, actual) : 0;
        const settlement = releaseHold(hold, used, pipe);
        if (settlement) writes.settle(settlement);
      }
      // Usage beyond the estimate taken at admission is charged now, off the request path: the
      // buckets go below zero and the next request waits until the overrun has refilled.
      // The isolate's lease absorbs what it can (its next requests see it at once); the rest goes to
      // the bucket.
      const overrun = actual ? Math.ceil(actual.tokens - rateTokens) : 0;
      if (overrun > 0 && !degradedRate) {
        for (const { resource, label } of plan.rate) {
          if (label.kind !== "tokens" || resource.limit <= 0) continue;
          const rest = overrun - chargeLease(resource, overrun);
          if (rest > 0) {
            chargeBucket(pipe, resource, rest);
          }
        }
      }
      if (!batch && !writes.empty) await writes.exec(redis).catch(() => null);
    },
  };
}
