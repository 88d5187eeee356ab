import type { EngineReport } from "../../../schema/contracts/heartbeat.ts";
import type { EngineConfig } from "../config.ts";
import type { CircuitBreaker } from "./breaker.ts";
import type { LoraAdapter } from "./http.ts";
import type { ConcurrencyLimiter } from "./limiter.ts";
import type { EngineAdapter, EngineLoad, ProbeResult } from "./types.ts";

/** What the pool knows about one engine; the proxy takes `limiter` slots and reads `config.url`. */
export interface EngineRuntime {
  readonly id: string;
  readonly config: EngineConfig;
  readonly adapter: EngineAdapter;
  readonly breaker: CircuitBreaker;
  readonly limiter: ConcurrencyLimiter;
  /** Last health probe; null before the first one finished. */
  readonly lastProbe: ProbeResult | null;
  /** Unix ms of the last probe. */
  readonly lastProbeAt: number | null;
  /** Last load scrape (all null for engines without metrics, or when the scrape failed). */
  readonly load: EngineLoad;
  /** Models served: the configured ones, else the last list the engine reported; plus its LoRA adapters. */
  readonly models: readonly string[];
  /** LoRA adapters the engine serves (their names are in `models` too); empty for kinds without them. */
  readonly adapters: readonly LoraAdapter[];
}

/** Whether the engine's kind serves LoRA adapters and loads them at runtime (vLLM's routes; the simulator mirrors them). */
export function supportsLora(config: EngineConfig): boolean {
  return config.kind === "vllm" || config.kind === "sim";
}

/** Whether requests may go to the engine now: the last probe was healthy and its circuit is closed. */
export function canTakeRequests(rt: EngineRuntime): boolean {
  return rt.lastProbe?.healthy === true && rt.breaker.allowsRequests();
}

/**
 * Load score, lower is better, in "requests per slot": (max(backplane in-flight, engine running) +
 * backplane queued + engine waiting) / maxConcurrency. In-flight is live while the engine's gauges
 * are up to one scrape old; taking the max of the two counts our own requests once yet still sees
 * traffic that reaches the engine around the backplane. Any engine-side waiting means the engine
 * is saturated, so it counts fully.
 */
export function loadScore(rt: EngineRuntime): number {
  const running = Math.max(rt.limiter.inFlight, rt.load.running ?? 0);
  return (running + rt.limiter.queued + (rt.load.waiting ?? 0)) / rt.config.maxConcurrency;
}

/** Orders candidates: lower load score, then lower KV cache use, then config order (stable sort). */
export function compareLoad(a: EngineRuntime, b: EngineRuntime): number {
  return loadScore(a) - loadScore(b) || (a.load.kvCacheUsage ?? 0) - (b.load.kvCacheUsage ?? 0);
}

const count = (value: number | null): number | null => (value === null || !Number.isFinite(value) ? null : Math.max(0, Math.round(value)));
const nonNegative = (value: number | null): number | null => (value === null || !Number.isFinite(value) ? null : Math.max(0, value));

/** The heartbeat's view of one engine (schema/contracts/heartbeat.ts), with values clamped to the schema's ranges. */
export function engineReport(rt: EngineRuntime): EngineReport {
  const kv = nonNegative(rt.load.kvCacheUsage);
  return {
    id: rt.id,
    kind: rt.config.kind,
    models: rt.models.filter((m) => m.length <= 256).slice(0, 256),
    healthy: rt.lastProbe?.healthy === true,
    circuit: rt.breaker.state(),
    inFlight: rt.limiter.inFlight,
    queued: rt.limiter.queued,
    maxConcurrency: rt.config.maxConcurrency,
    running: count(rt.load.running),
    waiting: count(rt.load.waiting),
    kvCacheUsage: kv === null ? null : Math.min(1, kv),
    recentTtftMs: nonNegative(rt.load.recentTtftMs),
    promptTokensTotal: nonNegative(rt.load.promptTokensTotal),
    generationTokensTotal: nonNegative(rt.load.generationTokensTotal),
    ...(supportsLora(rt.config)
      ? { adapters: rt.adapters.filter((a) => a.name.length <= 256 && a.base.length <= 256).slice(0, 256).map(({ name, base }) => ({ name, base })) }
      : {}),
  };
}
