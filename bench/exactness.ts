/**
 * The multi-isolate exactness run (issue 12): several plain workerd processes of one deployment (one
 * database, one Redis prefix) in front of one simulated engine, many concurrent clients spread over
 * them, and three limits driven past exhaustion, each on a fresh key: a key's requests per minute,
 * a requests budget and a spend budget. Admission must never pass a limit (zero overshoot) and must
 * let at least 95 % of it be used. Not timed: tests/e2e/exactness.test.ts asserts it, and the
 * benchmark report shows it (`formatExactness`).
 */
import { setTimeout as sleep } from "node:timers/promises";
import { adminClient, measureRequestCost, meter, MODEL, startDeployment, type Deployment } from "./exactness-deployment.ts";
import { newTally, oneRound, untilAllRefused, type Tally, type Traffic } from "./exactness-clients.ts";
import type { Edge } from "./lib/edge.ts";
import { Teardown } from "./teardown.ts";

export { formatExactness } from "./exactness-report.ts";

/** Options of `runExactness`. */
export interface ExactnessOptions {
  /** A Postgres admin URL: the run's database is created there and dropped at the end. */
  pgAdminUrl: string;
  redisUrl: string;
  host?: string;
  /** workerd processes of the deployment (default 3). */
  workerds?: number;
  /** Clients sending at once, spread round-robin over the workerd processes (default 50). */
  concurrency?: number;
  /** The key's requests per minute (default 100). */
  rpm?: number;
  /** The key's requests budget (default 10). */
  requestsBudget?: number;
  /** The key's spend budget is sized so that about this many requests fit at their real cost (default 50). */
  spendRequests?: number;
  /** max_tokens of every request (default 128): the engine always produces that many, so the reservation stays within about 2× the real cost. */
  maxTokens?: number;
  /** Pause for settlements (given-back reservations, capacity leases going back once idle: LEASE_IDLE_MS, 1 s) before each retry round and before metering is read (default 1 500 ms). */
  settleMs?: number;
  /** Give up on a scenario whose limit is not exhausted within this long (default 30 s). */
  scenarioTimeoutMs?: number;
  /** Worker vars over the benchmark's, for every workerd. */
  vars?: Record<string, string>;
  log?: (line: string) => void;
  signal?: AbortSignal;
  /** The caller's clean-up: closing it also stops this run's processes (an interrupted benchmark). */
  teardown?: Teardown;
}

/** What one limit saw. */
export interface ScenarioResult {
  name: "rpm" | "requests" | "spend";
  /** What was limited, for the report. */
  title: string;
  unit: "requests" | "micro-USD";
  limit: number;
  /** The most that may be used in this run: the limit, plus for requests per minute what the bucket refilled during the run. */
  allowed: number;
  admitted: number;
  refused: number;
  errors: number;
  errorSamples: string[];
  /** Requests admitted (rpm, requests) or the spend recorded in usage_records (spend). */
  used: number;
  /** used / allowed. */
  usedShare: number;
  /** max(0, used - allowed): zero when admission is exact. */
  overshoot: number;
  /** Wall time from the first request to the last answer. */
  durationMs: number;
  /** Admitted per workerd process. */
  admittedBy: number[];
  /** Rounds of one request per client after the refusals (budgets only). */
  retryRounds: number;
  /** Served requests found in usage_records after the flush (should equal `admitted`). */
  metered: number;
  /** The budget's Redis counter after the run (budgets only). */
  counter: number | null;
  /** Checks this scenario failed; empty when it passed. */
  failures: string[];
}

/** The whole run. */
export interface ExactnessResult {
  workerds: number;
  concurrency: number;
  maxTokens: number;
  /** Real cost of one request (micro-USD), measured before the spend scenario sized its budget. */
  requestCostMicros: number;
  scenarios: ScenarioResult[];
  /** Checks of the whole run (every workerd admitted in some scenario) and of every scenario. */
  failures: string[];
  passed: boolean;
  setupMs: number;
}

/** The least share of a limit that must be usable. */
export const MIN_USED_SHARE = 0.95;
const MAX_RETRY_ROUNDS = 20;

interface ScenarioSpec {
  name: ScenarioResult["name"];
  title: string;
  unit: ScenarioResult["unit"];
  limit: number;
  refusalCode: string;
  /** Sets the limit on the fresh key. */
  configure(keyId: string): Promise<void>;
  /** Retry rounds after the refusals until nothing more is admitted (budgets; a rate limit refills forever). */
  retry: boolean;
}

/** Starts the deployment, runs the three scenarios and cleans everything up, whatever happens. */
export async function runExactness(opts: ExactnessOptions): Promise<ExactnessResult> {
  const teardown = new Teardown();
  opts.teardown?.add("exactness run", () => teardown.close());
  const log = opts.log ?? (() => {});
  const workerds = opts.workerds ?? 3;
  const concurrency = opts.concurrency ?? 50;
  const maxTokens = opts.maxTokens ?? 128;
  const settleMs = opts.settleMs ?? 1_500;
  if (workerds < 1 || concurrency < workerds) throw new Error(`runExactness: needs at least one workerd and one client per workerd (got ${workerds} and ${concurrency})`);
  try {
    const started = Date.now();
    log(`Starting ${workerds} workerd processes of one deployment, one engine and its backplane…`);
    const deployment = await startDeployment({ ...opts, workerds }, teardown);
    const { edge } = deployment;
    const admin = adminClient(edge);
    log("Measuring the real cost of a request…");
    const requestCostMicros = await measureRequestCost(deployment, maxTokens);
    const tenant = await admin<{ id: string }>("POST", "/tenants", { name: "exactness" });
    const environment = await admin<{ id: string }>("POST", "/environments", { tenant_id: tenant.id, name: "exactness" });
    const setupMs = Date.now() - started;

    const budget = (kind: string, amount: number) => async (keyId: string) => {
      await admin("POST", "/budgets", { scope: "key", scope_id: keyId, kind, period: "total", amount });
    };
    const rpm = opts.rpm ?? 100;
    const requests = opts.requestsBudget ?? 10;
    const spend = (opts.spendRequests ?? 50) * requestCostMicros;
    const specs: ScenarioSpec[] = [
      {
        name: "rpm",
        title: `key requests per minute: ${rpm}`,
        unit: "requests",
        limit: rpm,
        refusalCode: "rate_limit_exceeded",
        configure: async (keyId) => {
          await admin("PUT", `/limits/key/${keyId}`, { rpm });
        },
        retry: false,
      },
      { name: "requests", title: `key requests budget: ${requests} in total`, unit: "requests", limit: requests, refusalCode: "insufficient_quota", configure: budget("requests", requests), retry: true },
      { name: "spend", title: `key spend budget: ${spend} micro-USD in total`, unit: "micro-USD", limit: spend, refusalCode: "insufficient_quota", configure: budget("spend", spend), retry: true },
    ];
    const scenarios: ScenarioResult[] = [];
    for (const spec of specs) {
      opts.signal?.throwIfAborted();
      const key = await admin<{ id: string; key: string }>("POST", "/keys", { environment_id: environment.id, name: `exactness-${spec.name}` });
      await spec.configure(key.id);
      log(`Exactness: ${spec.title}, ${concurrency} clients over ${workerds} workerd processes…`);
      const traffic: Traffic = { urls: deployment.urls, apiKey: key.key, model: MODEL, maxTokens, concurrency, refusalCode: spec.refusalCode, signal: opts.signal };
      const result = await runScenario(deployment, spec, traffic, key.id, { settleMs, timeoutMs: opts.scenarioTimeoutMs ?? 30_000 });
      log(`  admitted ${result.admitted}, refused ${result.refused}, used ${result.used} of ${result.allowed} ${result.unit}, overshoot ${result.overshoot}, ${(result.durationMs / 1000).toFixed(1)} s`);
      scenarios.push(result);
    }

    const failures = scenarios.flatMap((s) => s.failures.map((f) => `${s.name}: ${f}`));
    const idle = deployment.urls.filter((_, i) => scenarios.every((s) => (s.admittedBy[i] ?? 0) === 0));
    if (idle.length > 0) failures.push(`workerd processes that admitted nothing in any scenario: ${idle.join(", ")}`);
    return { workerds, concurrency, maxTokens, requestCostMicros, scenarios, failures, passed: failures.length === 0, setupMs };
  } finally {
    await teardown.close();
  }
}

async function runScenario(deployment: Deployment, spec: ScenarioSpec, traffic: Traffic, keyId: string, opts: { settleMs: number; timeoutMs: number }): Promise<ScenarioResult> {
  const tally: Tally = newTally(traffic.urls.length);
  const started = performance.now();
  const exhausted = await untilAllRefused(traffic, tally, opts.timeoutMs);
  let retryRounds = 0;
  if (spec.retry) {
    // Reservations above the real cost are given back at settlement (in waitUntil, after the
    // answer): ask again once they have landed, until a round admits nothing.
    for (let admitted = 1; admitted > 0 && retryRounds < MAX_RETRY_ROUNDS; retryRounds++) {
      await sleep(opts.settleMs, undefined, { signal: traffic.signal });
      admitted = await oneRound(traffic, tally, retryRounds);
    }
  }
  const durationMs = performance.now() - started;
  await sleep(opts.settleMs, undefined, { signal: traffic.signal });
  const metered = await meter(deployment, keyId, tally.admitted);
  const counter = spec.retry ? await budgetCounter(deployment.edge, keyId) : null;

  // A token bucket refills limit/60 per second, continuously: that much more may be admitted.
  const allowed = spec.name === "rpm" ? spec.limit + Math.floor(((durationMs / 1000) * spec.limit) / 60) : spec.limit;
  const used = spec.name === "spend" ? metered.spend : tally.admitted;
  const failures: string[] = [];
  if (!exhausted) failures.push(`not every client was refused within ${opts.timeoutMs} ms`);
  if (spec.retry && retryRounds >= MAX_RETRY_ROUNDS) failures.push(`still admitting after ${MAX_RETRY_ROUNDS} retry rounds`);
  if (tally.errors > 0) failures.push(`${tally.errors} requests neither served nor refused: ${tally.errorSamples.join("; ")}`);
  if (used > allowed) failures.push(`overshoot: used ${used} ${spec.unit}, allowed ${allowed}`);
  if (used < Math.ceil(MIN_USED_SHARE * allowed)) failures.push(`under-use: used ${used} of ${allowed} ${spec.unit} (less than ${MIN_USED_SHARE * 100} %)`);
  if (metered.served !== tally.admitted) failures.push(`${tally.admitted} requests admitted but ${metered.served} metered as served`);
  return {
    name: spec.name,
    title: spec.title,
    unit: spec.unit,
    limit: spec.limit,
    allowed,
    admitted: tally.admitted,
    refused: tally.refused,
    errors: tally.errors,
    errorSamples: tally.errorSamples,
    used,
    usedShare: allowed === 0 ? 0 : used / allowed,
    overshoot: Math.max(0, used - allowed),
    durationMs,
    admittedBy: tally.admittedBy,
    retryRounds,
    metered: metered.served,
    counter,
    failures,
  };
}

/** The used amount of the key's (only) budget, from `GET /admin/counters/key/:id`. */
async function budgetCounter(edge: Edge, keyId: string): Promise<number | null> {
  const counters = await adminClient(edge)<{ budgets: { used: number }[] }>("GET", `/counters/key/${keyId}`);
  return counters.budgets[0]?.used ?? null;
}

