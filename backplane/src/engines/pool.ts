import type { EngineReport } from "../../../schema/contracts/heartbeat.ts";
import type { BackplaneConfig, EngineConfig, LogLevel } from "../config.ts";
import { createAdapter, hasLoadMetrics, NO_LOAD } from "./adapters.ts";
import { CircuitBreaker, type CircuitState } from "./breaker.ts";
import { ConcurrencyLimiter } from "./limiter.ts";
import { canTakeRequests, compareLoad, type EngineRuntime, engineReport } from "./runtime.ts";
import type { LoraAdapter } from "./http.ts";
import type { EngineAdapter, EngineLoad, ProbeResult } from "./types.ts";

/** Pool timing and breaker settings (the same names as BackplaneConfig, so the config can be passed as is). */
export type PoolSettings = Pick<BackplaneConfig, "healthIntervalMs" | "loadIntervalMs" | "breakerFailures" | "breakerOpenMs"> & {
  /** Time an engine has to answer one probe step or scrape (default 5000 ms). */
  probeTimeoutMs?: number;
};

/** Structured log sink: an event name, its fields and a level (compatible with log.ts's `Log`). */
export type PoolLogger = (event: string, fields: Record<string, unknown>, level?: LogLevel) => void;

/** What the pool is built from. */
export interface EnginePoolOptions {
  engines: readonly EngineConfig[];
  settings: PoolSettings;
  log: PoolLogger;
  /** Called when an engine's health, circuit or models change (e.g. to heartbeat at once). */
  onChange?: () => void;
}

/** The pool's overall verdict, as a heartbeat status. */
export type PoolStatus = "ready" | "degraded" | "unhealthy";

interface Runtime extends EngineRuntime {
  lastProbe: ProbeResult | null;
  lastProbeAt: number | null;
  load: EngineLoad;
  models: readonly string[];
  discovered: string[];
  adapters: readonly LoraAdapter[];
  /** Bumped by every adapter load or unload made here, so a probe that began before one does not undo it. */
  adapterEpoch: number;
  probing: Promise<ProbeResult> | null;
  scraping: Promise<void> | null;
  loadError: string | null;
  decisionTimer: NodeJS.Timeout | null;
  /** healthy|circuit|models as last announced, to call onChange only on a real change. */
  announced: { healthy: boolean | null; circuit: CircuitState; models: string };
}

/**
 * The engines of this host with their health, circuit, concurrency limit and load. Probes every
 * engine every healthIntervalMs, scrapes vLLM-style metrics every loadIntervalMs, and probes an
 * engine as soon as its open circuit turns half_open, so one probe decides without waiting a tick.
 */
export class EnginePool {
  readonly #runtimes: Runtime[];
  readonly #settings: PoolSettings;
  readonly #log: PoolLogger;
  readonly #onChange: (() => void) | undefined;
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #abort = new AbortController();
  #started: Promise<void> | null = null;
  #closing: Promise<void> | null = null;

  constructor(options: EnginePoolOptions) {
    this.#settings = options.settings;
    this.#log = options.log;
    this.#onChange = options.onChange;
    const timeoutMs = options.settings.probeTimeoutMs;
    this.#runtimes = options.engines.map((config) => {
      const adapter: EngineAdapter = createAdapter(config, timeoutMs === undefined ? {} : { timeoutMs });
      return {
        id: config.id,
        config,
        adapter,
        breaker: new CircuitBreaker({ failures: options.settings.breakerFailures, openMs: options.settings.breakerOpenMs }),
        limiter: new ConcurrencyLimiter(config.maxConcurrency, config.maxQueue),
        lastProbe: null,
        lastProbeAt: null,
        load: { ...NO_LOAD },
        models: config.models,
        discovered: [],
        adapters: [],
        adapterEpoch: 0,
        probing: null,
        scraping: null,
        loadError: null,
        decisionTimer: null,
        announced: { healthy: null, circuit: "closed", models: config.models.join(",") },
      };
    });
  }

  /** Probes and scrapes every engine once (resolves when done), then keeps doing so on the intervals. */
  start(): Promise<void> {
    this.#started ??= (async () => {
      await Promise.all(this.#runtimes.map((rt) => this.#probe(rt)));
      await Promise.all(this.#runtimes.map((rt) => this.#scrape(rt)));
      this.#every(this.#settings.healthIntervalMs, () => Promise.all(this.#runtimes.map((rt) => this.#probe(rt))));
      this.#every(this.#settings.loadIntervalMs, () => Promise.all(this.#runtimes.map((rt) => this.#scrape(rt))));
    })();
    return this.#started;
  }

  /** Stops the timers and aborts probes in flight; safe to call twice. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#abort.abort(new Error("engine pool closed"));
      for (const timer of this.#timers) clearTimeout(timer);
      this.#timers.clear();
      await Promise.allSettled(this.#runtimes.flatMap((rt) => [rt.probing, rt.scraping].filter((p) => p !== null)));
    })();
    return this.#closing;
  }

  /** Every engine, in config order. */
  engines(): readonly EngineRuntime[] {
    return this.#runtimes;
  }

  /** One engine by id. */
  get(engineId: string): EngineRuntime | undefined {
    return this.#runtimes.find((rt) => rt.id === engineId);
  }

  /** Engines that can take a request for `model` now, least-loaded first (see `loadScore` in runtime.ts). */
  candidates(model: string): EngineRuntime[] {
    return this.#runtimes.filter((rt) => canTakeRequests(rt) && rt.models.includes(model)).sort(compareLoad);
  }

  /** Whether any engine serves `model`, healthy or not: false means "unknown model" (404), not "unavailable" (503). */
  serves(model: string): boolean {
    return this.#runtimes.some((rt) => rt.models.includes(model));
  }

  /** Union of the models of the engines that can take requests now, sorted. */
  models(): string[] {
    return [...new Set(this.#runtimes.filter(canTakeRequests).flatMap((rt) => rt.models))].sort();
  }

  /** One report per engine, for the heartbeat. */
  reports(): EngineReport[] {
    return this.#runtimes.map(engineReport);
  }

  /** ready: every engine healthy with its circuit closed; degraded: some can take requests; unhealthy: none can. */
  status(): PoolStatus {
    const able = this.#runtimes.filter(canTakeRequests).length;
    if (able === 0) return "unhealthy";
    return able === this.#runtimes.length ? "ready" : "degraded";
  }

  /** Feeds a proxied request's outcome to the engine's breaker (ok = the engine answered properly). */
  recordResult(engineId: string, ok: boolean): void {
    const rt = this.#runtimes.find((r) => r.id === engineId);
    if (rt === undefined || this.#closing !== null) return;
    if (ok) rt.breaker.recordSuccess();
    else rt.breaker.recordFailure();
    if (rt.breaker.state() === "open") this.#scheduleDecision(rt);
    this.#announce(rt);
  }

  /**
   * Records an adapter the engine has just loaded (management/adapters.ts): it is routable at once,
   * before the next probe lists it, and the change is announced (a heartbeat goes out now).
   */
  addAdapter(engineId: string, adapter: LoraAdapter): void {
    const rt = this.#runtimes.find((r) => r.id === engineId);
    if (rt === undefined) return;
    rt.adapters = [...rt.adapters.filter((a) => a.name !== adapter.name), adapter];
    rt.adapterEpoch++;
    rt.models = modelsOf(rt);
    this.#announce(rt);
  }

  /** Forgets an adapter the engine has just unloaded: no request goes there for it any more. */
  removeAdapter(engineId: string, name: string): void {
    const rt = this.#runtimes.find((r) => r.id === engineId);
    if (rt === undefined) return;
    rt.adapters = rt.adapters.filter((a) => a.name !== name);
    rt.discovered = rt.discovered.filter((m) => m !== name);
    rt.adapterEpoch++;
    rt.models = modelsOf(rt);
    this.#announce(rt);
  }

  /** Probes one engine now (after any probe in flight) and returns the result; null for an unknown id. */
  async probeNow(engineId: string): Promise<ProbeResult | null> {
    const rt = this.#runtimes.find((r) => r.id === engineId);
    if (rt === undefined) return null;
    if (rt.probing !== null) await rt.probing;
    return this.#probe(rt);
  }

  #probe(rt: Runtime): Promise<ProbeResult> {
    rt.probing ??= this.#runProbe(rt).finally(() => {
      rt.probing = null;
    });
    return rt.probing;
  }

  async #runProbe(rt: Runtime): Promise<ProbeResult> {
    // Only a probe started while half_open may decide: one sent before the circuit opened says nothing new.
    const deciding = rt.breaker.state() === "half_open";
    const epoch = rt.adapterEpoch;
    const result = await rt.adapter.probe(this.#abort.signal);
    if (this.#closing !== null) return result;
    rt.lastProbe = result;
    rt.lastProbeAt = Date.now();
    // A list read before an adapter was loaded or unloaded here is out of date: the next probe reconciles.
    if (result.models !== null && epoch === rt.adapterEpoch) {
      rt.discovered = result.models;
      rt.adapters = result.adapters ?? [];
    }
    rt.models = modelsOf(rt);
    if (!result.healthy) rt.load = { ...NO_LOAD };
    if (deciding && rt.breaker.state() === "half_open") {
      rt.breaker.recordProbe(result.healthy);
      if (rt.breaker.state() === "open") this.#scheduleDecision(rt);
    }
    this.#announce(rt);
    return result;
  }

  #scrape(rt: Runtime): Promise<void> {
    if (!hasLoadMetrics(rt.config) || rt.lastProbe?.healthy !== true || this.#closing !== null) return Promise.resolve();
    rt.scraping ??= (async () => {
      try {
        const load = await rt.adapter.scrapeLoad(this.#abort.signal);
        if (this.#closing !== null) return;
        rt.load = load;
        rt.loadError = null;
      } catch (err) {
        if (this.#closing !== null) return;
        rt.load = { ...NO_LOAD };
        // Log the first failure of a run only: a broken /metrics would otherwise log every interval.
        const message = err instanceof Error ? err.message : String(err);
        if (rt.loadError === null) this.#log("engine.load_failed", { engine: rt.id, error: message }, "warn");
        rt.loadError = message;
      }
    })().finally(() => {
      rt.scraping = null;
    });
    return rt.scraping;
  }

  /** Probes the engine when its open circuit turns half_open. */
  #scheduleDecision(rt: Runtime): void {
    if (rt.decisionTimer !== null) {
      clearTimeout(rt.decisionTimer);
      this.#timers.delete(rt.decisionTimer);
    }
    // One pending decision per engine; a repeated failure while open keeps the same deadline.
    rt.decisionTimer = this.#later(rt.breaker.msUntilHalfOpen(), async () => {
      rt.decisionTimer = null;
      const state = rt.breaker.state();
      // setTimeout may fire a millisecond early against Date.now(); try again then.
      if (state === "open") return this.#scheduleDecision(rt);
      if (state !== "half_open") return;
      this.#announce(rt);
      if (rt.probing !== null) await rt.probing;
      if (rt.breaker.state() === "half_open") await this.#probe(rt);
    });
  }

  #announce(rt: Runtime): void {
    const before = rt.announced;
    const now = { healthy: rt.lastProbe?.healthy === true, circuit: rt.breaker.state(), models: rt.models.join(",") };
    if (now.healthy === before.healthy && now.circuit === before.circuit && now.models === before.models) return;
    rt.announced = now;
    if (now.healthy !== before.healthy) {
      const fields = { engine: rt.id, healthy: now.healthy, error: rt.lastProbe?.error ?? null, latencyMs: rt.lastProbe?.latencyMs ?? null };
      this.#log("engine.health", fields, now.healthy ? "info" : "warn");
    }
    if (now.circuit !== before.circuit) this.#log("engine.circuit", { engine: rt.id, from: before.circuit, to: now.circuit }, now.circuit === "open" ? "warn" : "info");
    if (now.models !== before.models) this.#log("engine.models", { engine: rt.id, models: [...rt.models] });
    try {
      this.#onChange?.();
    } catch (err) {
      this.#log("engine.on_change_failed", { error: err instanceof Error ? err.message : String(err) }, "error");
    }
  }

  #every(intervalMs: number, task: () => Promise<unknown>): void {
    const tick = async (): Promise<void> => {
      await task();
      if (this.#closing === null) this.#later(intervalMs, tick);
    };
    this.#later(intervalMs, tick);
  }

  #later(ms: number, fn: () => Promise<void>): NodeJS.Timeout | null {
    if (this.#closing !== null) return null;
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      void fn().catch((err: unknown) => this.#log("engine.pool_task_failed", { error: err instanceof Error ? err.message : String(err) }, "error"));
    }, ms);
    // The pool must never be what keeps the daemon's process alive.
    timer.unref();
    this.#timers.add(timer);
    return timer;
  }
}

/**
 * The models an engine serves: the configured names, else the ones it listed; plus its LoRA adapters
 * (already among the listed ones; added for configured engines and for adapters loaded since the last probe).
 */
function modelsOf(rt: Runtime): readonly string[] {
  const base = rt.config.models.length > 0 ? rt.config.models : rt.discovered;
  const extra = rt.adapters.map((a) => a.name).filter((name) => !base.includes(name));
  return extra.length === 0 ? base : [...base, ...extra];
}
