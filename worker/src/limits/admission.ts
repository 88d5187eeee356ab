import type { Redis } from "@upstash/redis/cloudflare";
import type { KeyIdentity } from "../auth/identity.ts";
import { ApiError } from "../errors.ts";
import type { RoutingSnapshot } from "../routing/snapshot.ts";
import { countEvent } from "../platform/metrics.ts";
import type { Settings } from "../settings.ts";
import { describeBudget, reserveBudgets, type Cost } from "./budgets.ts";
import { acquireConcurrency } from "./concurrency.ts";
import { chargeTokens, checkRateLimits } from "./rate.ts";
import { LAYERS, type AdmissionSubject, type Layer, type LayerLimits, type RedisBatch } from "./types.ts";

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

/** An admitted request: response headers, and `finish` to settle budgets and free the slot. */
export interface Admission {
  headers: Record<string, string>;
  /**
   * Settles budgets to the real cost (null: the request failed, release everything), charges tokens
   * per minute for usage beyond the admission estimate, and releases the concurrency lease; with a
   * batch, only adds those writes to it (the caller executes it).
   */
  finish(actual: Cost | null, batch?: RedisBatch): Promise<void>;
  pending: Promise<unknown>;
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
      `This request counts as ${rateTokens} tokens (an estimate of its input plus the most output it allows), more than the ${layer}'s limit of ${tpm} tokens per minute, so it can never be admitted. ${limitField === "input" ? "Send less input per request." : `Lower '${limitField}' or n, or shorten the prompt.`}`,
      { param: limitField },
    );
  }
}

/**
 * Admits a request at every layer in one round trip of wall time: rate limits (requests and tokens
 * per minute, fail open), concurrency leases (fail open) and budgets (atomic, fail closed) run in
 * parallel; whatever was taken is given back if any of them refuses. A request larger than a layer's
 * tokens per minute is a 400 before anything is taken.
 */
export async function admit(
  deps: { redis: Redis; settings: Settings; log: (event: string, fields: Record<string, unknown>) => void; requestId: string },
  identity: KeyIdentity,
  snapshot: RoutingSnapshot,
  costs: { max: Cost; rateTokens: number; limitField?: string },
): Promise<Admission> {
  const { redis, settings } = deps;
  const subject: AdmissionSubject = {
    tenantId: identity.tenantId,
    environmentId: identity.environmentId,
    keyId: identity.keyId,
    limits: effectiveLimits(settings, identity, snapshot),
  };
  checkFitsTokenLimits(subject, costs.rateTokens, costs.limitField ?? "max_tokens");
  const prefix = settings.redisPrefix;
  const [rate, lease, budget] = await Promise.all([
    checkRateLimits(redis, prefix, subject, costs.rateTokens, { timeoutMs: settings.limitsTimeoutMs }),
    acquireConcurrency(redis, prefix, subject, { timeoutMs: settings.limitsTimeoutMs, requestId: deps.requestId }),
    reserveBudgets(redis, prefix, identity.budgets, costs.max),
  ]);
  if (rate.degraded || lease.degraded) {
    deps.log("limits_fail_open", { requestId: deps.requestId, rate: rate.degraded, concurrency: lease.degraded });
    if (rate.degraded) countEvent("switchyard_limits_fail_open_total", { check: "rate" });
    if (lease.degraded) countEvent("switchyard_limits_fail_open_total", { check: "concurrency" });
  }
  const giveBack = async () => {
    await lease.release();
    if (budget.ok) await budget.release();
  };
  if (!rate.allowed || !lease.acquired || !budget.ok) {
    await giveBack().catch(() => null);
    if (!rate.allowed && rate.blocked) {
      const { layer, kind } = rate.blocked;
      const limit = subject.limits[layer][kind === "requests" ? "rpm" : "tpm"];
      throw new ApiError(
        "rate_limit_exceeded",
        `Rate limit reached for the ${layer} (${kind} per minute: limit ${limit}). Retry after ${rate.retryAfterSeconds} s.`,
        { headers: { ...rate.headers, "retry-after": String(Math.max(1, rate.retryAfterSeconds)) }, type: kind },
      );
    }
    if (!lease.acquired && lease.blocked) {
      const limit = subject.limits[lease.blocked.layer].concurrency;
      throw new ApiError(
        "rate_limit_exceeded",
        `Too many requests in flight for the ${lease.blocked.layer} (limit ${limit}). Retry when one of them finishes.`,
        { headers: { ...rate.headers, "retry-after": "1" } },
      );
    }
    if (!budget.ok && budget.reason === "unavailable") {
      deps.log("budgets_fail_closed", { requestId: deps.requestId });
      countEvent("switchyard_budgets_fail_closed_total");
      throw new ApiError("dependency_unavailable", "Budgets cannot be checked right now, so the request was not admitted. Retry in a few seconds.", {
        headers: { "retry-after": "2" },
      });
    }
    const which = !budget.ok && budget.budget ? describeBudget(budget.budget) : "a budget";
    throw new ApiError("insufficient_quota", `This request could exceed ${which}. Lower max_tokens, or raise the budget.`);
  }
  let finished = false;
  return {
    headers: rate.headers,
    pending: rate.pending,
    async finish(actual, batch) {
      if (finished) return;
      finished = true;
      // Usage beyond the estimate taken at admission is charged now, off the request path: the
      // buckets go below zero and the next request waits until the overrun has refilled.
      const overrun = actual ? actual.tokens - costs.rateTokens : 0;
      await Promise.all([
        lease.release(batch),
        actual ? budget.settle(actual, batch) : budget.release(batch),
        overrun > 0 && !rate.degraded ? chargeTokens(redis, prefix, subject, overrun, batch) : Promise.resolve(),
      ]);
    },
  };
}


