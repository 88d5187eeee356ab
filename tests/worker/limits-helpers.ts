import { env } from "cloudflare:test";
import { Redis } from "@upstash/redis/cloudflare";
import { vi } from "vitest";
import type { KeyIdentity } from "../../worker/src/auth/identity.ts";
import { ApiError } from "../../worker/src/errors.ts";
import { admit, type Admission, type AdmissionDeps } from "../../worker/src/limits/admission.ts";
import { budgetCounter, budgetMarkerKey, type BudgetEntry, type Cost } from "../../worker/src/limits/budgets.ts";
import { resetLeases } from "../../worker/src/limits/leases.ts";
import type { Layer, LayerLimits } from "../../worker/src/limits/types.ts";
import type { RoutingSnapshot } from "../../worker/src/routing/snapshot.ts";
import { settingsFrom, type Settings } from "../../worker/src/settings.ts";
import { redis } from "./helpers.ts";

/** Limits per layer for a test caller; missing values are unlimited (the configured defaults are cleared). */
export type Limits = Partial<Record<Layer, Partial<LayerLimits>>>;

/** A budget of a test caller (scope and scope id default to its key). */
export type TestBudget = Omit<BudgetEntry, "scope" | "scopeId"> & Partial<Pick<BudgetEntry, "scope" | "scopeId">>;

/** Who `admit()` is asked about: a key's identity and the routing snapshot that carries the global limits. */
export interface Caller {
  identity: KeyIdentity;
  snapshot: RoutingSnapshot;
}

/** A caller with the given limits and budgets (ids default to t1/e1/k1). */
export function caller(limits: Limits, opts: { tenantId?: string; environmentId?: string; keyId?: string; budgets?: TestBudget[] } = {}): Caller {
  const keyId = opts.keyId ?? "k1";
  const identity: KeyIdentity = {
    keyId,
    keyPrefix: `sk-sy-${keyId}`,
    tenantId: opts.tenantId ?? "t1",
    environmentId: opts.environmentId ?? "e1",
    tenantStatus: "active",
    scopes: ["chat"],
    allowedModels: null,
    expiresAt: null,
    revoked: false,
    pinnedRegion: null,
    overrides: { tenant: limits.tenant, environment: limits.environment, key: limits.key },
    budgets: (opts.budgets ?? []).map((b) => ({ scope: "key", scopeId: keyId, ...b })),
  };
  const global = limits.global;
  const snapshot: RoutingSnapshot = { builtAt: 0, models: {}, nodes: [], globalLimits: global ? { rpm: global.rpm ?? null, tpm: global.tpm ?? null } : null };
  return { identity, snapshot };
}

/** A key prefix no other test shares, so buckets, slot sets, budget counters and lease hashes never carry over. */
export function freshPrefix(): string {
  return `${env.REDIS_PREFIX}t-${crypto.randomUUID()}:`;
}

/** A client for a port nothing listens on: every command fails at once with a connection error. */
export function deadRedis(url = "http://127.0.0.1:1"): Redis {
  return new Redis({ url, token: "x", enableTelemetry: false, retry: { retries: 1, backoff: () => 20 } });
}

/**
 * Runs `fn` with a Redis whose HTTP requests never get an answer (the real outage mode a timeout
 * exists for; a closed port answers at once). Only requests to this client's host are held.
 */
export async function withSilentRedis<T>(fn: (redis: Redis) => Promise<T>): Promise<T> {
  const realFetch = globalThis.fetch;
  const silent = "http://silent-redis.test";
  vi.stubGlobal("fetch", (input: RequestInfo | URL, init?: RequestInit) =>
    String(input instanceof Request ? input.url : input).startsWith(silent) ? new Promise<Response>(() => {}) : realFetch(input, init),
  );
  try {
    return await fn(deadRedis(silent));
  } finally {
    vi.unstubAllGlobals();
  }
}

/**
 * Runs `fn` with a client of the real Redis whose HTTP requests are recorded: `commands` holds the
 * command names of each request (one array per request; a pipeline has several).
 */
export async function withCountingRedis<T>(fn: (redis: Redis, requests: string[][]) => Promise<T>): Promise<T> {
  const realFetch = globalThis.fetch;
  const counted = "http://counted-redis.test";
  const requests: string[][] = [];
  vi.stubGlobal("fetch", (input: RequestInfo | URL, init?: RequestInit) => {
    const url = String(input instanceof Request ? input.url : input);
    if (!url.startsWith(counted)) return realFetch(input, init);
    const body = JSON.parse(typeof init?.body === "string" ? init.body : "[]") as unknown[];
    const commands = Array.isArray(body[0]) ? (body as string[][]) : [body as string[]];
    requests.push(commands.map((c) => String(c[0]).toLowerCase()));
    return realFetch(env.UPSTASH_REDIS_REST_URL + url.slice(counted.length), init);
  });
  try {
    return await fn(new Redis({ url: counted, token: env.UPSTASH_REDIS_REST_TOKEN, enableTelemetry: false }), requests);
  } finally {
    vi.unstubAllGlobals();
  }
}

/** Settings that override the gateway's; every default limit is cleared so only a caller's own limits apply. */
export type Vars = Partial<Pick<Env, "LEASE_SECONDS" | "LEASE_IDLE_MS" | "LIMITS_TIMEOUT_MS">>;

const NO_DEFAULT_LIMITS = {
  LIMIT_GLOBAL_RPM: "",
  LIMIT_GLOBAL_TPM: "",
  LIMIT_TENANT_RPM: "",
  LIMIT_TENANT_TPM: "",
  LIMIT_TENANT_CONCURRENCY: "",
  LIMIT_ENVIRONMENT_RPM: "",
  LIMIT_ENVIRONMENT_TPM: "",
  LIMIT_KEY_RPM: "",
  LIMIT_KEY_TPM: "",
  LIMIT_KEY_CONCURRENCY: "",
} satisfies Partial<Env>;

/** What a test's admission costs: `tokens` is both the rate estimate and the budget's token reservation. */
export interface TestCost {
  tokens?: number;
  spend?: number;
  requests?: number;
  /** Tokens counted against tokens per minute (default: `tokens`). */
  rateTokens?: number;
}

/** One test's view of admission: its own prefix and settings, and the background work `admit()` handed to waitUntil. */
export interface LimitsHarness {
  prefix: string;
  settings: Settings;
  logs: { event: string; fields: Record<string, unknown> }[];
  /** Admits as a request of `who` would be, against `redis` (default: the real one). */
  admit(who: Caller, cost?: TestCost, opts?: { redis?: Redis }): Promise<Admission>;
  /** The ApiError `admit()` refuses with (fails the test if it admits). */
  refusal(who: Caller, cost?: TestCost, opts?: { redis?: Redis }): Promise<ApiError>;
  /** Waits until the background work handed to waitUntil so far, and any it started meanwhile, has ended. */
  background(): Promise<void>;
  /** Redis key of a budget's counter in the current period, under this harness's prefix. */
  budgetKey(budget: TestBudget): string;
}

const harnesses: LimitsHarness[] = [];

/**
 * A harness with a fresh prefix (its budget marker set unless `seeded` is false) and the given settings.
 * Call `quiesceLimits()` in afterEach.
 */
export async function limitsHarness(vars: Vars = {}, opts: { seeded?: boolean } = {}): Promise<LimitsHarness> {
  const prefix = freshPrefix();
  if (opts.seeded !== false) await redis().set(budgetMarkerKey(prefix), Date.now());
  const settings = settingsFrom({ ...env, ...NO_DEFAULT_LIMITS, ...vars, REDIS_PREFIX: prefix });
  const pending = new Set<Promise<unknown>>();
  const logs: LimitsHarness["logs"] = [];
  const admitAs = (who: Caller, cost: TestCost = {}, o: { redis?: Redis } = {}) => {
    const max: Cost = { tokens: cost.tokens ?? 1, spend: cost.spend ?? 0, requests: cost.requests ?? 1 };
    const deps: AdmissionDeps = {
      redis: o.redis ?? redis(),
      settings,
      log: (event, fields) => logs.push({ event, fields }),
      requestId: crypto.randomUUID(),
      waitUntil: (p) => {
        const tracked = p.catch(() => null).finally(() => pending.delete(tracked));
        pending.add(tracked);
      },
    };
    return admit(deps, who.identity, who.snapshot, { max, rateTokens: cost.rateTokens ?? max.tokens });
  };
  const harness: LimitsHarness = {
    prefix,
    settings,
    logs,
    admit: admitAs,
    async refusal(who, cost, o) {
      const outcome = await admitAs(who, cost, o).then(
        (admission) => admission,
        (err: unknown) => err,
      );
      if (outcome instanceof ApiError) return outcome;
      throw new Error(`expected a refusal, got ${outcome instanceof Error ? outcome.message : "an admission"}`);
    },
    async background() {
      while (pending.size > 0) await Promise.all([...pending]);
    },
    budgetKey(budget) {
      return budgetCounter(prefix, { scope: "key", scopeId: "k1", ...budget }, new Date()).key;
    },
  };
  harnesses.push(harness);
  return harness;
}

/**
 * For afterEach: forgets this isolate's leases (the next test must not be served from them or have
 * them reaped with its settings) and waits for the background work of the test's harnesses to end.
 * Each test has its own prefix, so what the forgotten leases hold in Redis is never looked at again.
 */
export async function quiesceLimits(): Promise<void> {
  vi.unstubAllGlobals();
  // A test that went through the whole worker (no harness) keeps the isolate's leases as it left them.
  if (harnesses.length === 0) return;
  resetLeases();
  const all = harnesses.splice(0);
  await Promise.all(all.map((h) => h.background()));
}

/** The records of a lease hash: holder → amount (the `:e` and `:a` fields left out). */
export async function leaseRecords(key: string): Promise<Record<string, number>> {
  const hash = (await redis().hgetall<Record<string, string | number>>(`${key}:lease`)) ?? {};
  return Object.fromEntries(Object.entries(hash).filter(([field]) => !field.includes(":")).map(([field, v]) => [field, Number(v)]));
}

/** Σ of the records of a lease hash. */
export async function leased(key: string): Promise<number> {
  return Object.values(await leaseRecords(key)).reduce((a, b) => a + b, 0);
}

/** A budget counter's value (0 when missing). */
export async function counterValue(key: string): Promise<number> {
  return Number((await redis().get<number | string>(key)) ?? 0);
}

/** A token bucket's stored tokens and refill time (null when the bucket is missing, i.e. full). */
export async function bucket(key: string): Promise<{ tokens: number; refilledAt: number } | null> {
  const stored = await redis().hmget<{ refilledAt: string | number | null; tokens: string | number | null }>(key, "refilledAt", "tokens");
  if (!stored || stored.refilledAt === null) return null;
  return { tokens: Number(stored.tokens), refilledAt: Number(stored.refilledAt) };
}

/** Settles `n` promises of admissions and tells admitted from refused. */
export async function outcomes(attempts: Promise<Admission>[]): Promise<{ admitted: Admission[]; refused: ApiError[] }> {
  const settled = await Promise.allSettled(attempts);
  const admitted: Admission[] = [];
  const refused: ApiError[] = [];
  for (const s of settled) {
    if (s.status === "fulfilled") admitted.push(s.value);
    else if (s.reason instanceof ApiError) refused.push(s.reason);
    else throw s.reason;
  }
  return { admitted, refused };
}

/** Sleeps. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
