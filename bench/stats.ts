import type { CpuSnapshot } from "./cpu.ts";
import type { LoadResult } from "./load.ts";
import type { Recorded } from "./usage-rows.ts";

/** Percentiles of a distribution, in ms. */
export interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** One target's (direct or gateway) measured run. */
export interface PhaseSummary {
  target: "direct" | "gateway";
  url: string;
  requests: number;
  ok: number;
  errors: number;
  errorKinds: Record<string, number>;
  /** The run stopped early at its time limit. */
  deadlineHit: boolean;
  wallMs: number;
  throughputRps: number;
  latencyMs: Percentiles | null;
  ttftMs: Percentiles | null;
  /** CPU ms per successful request, by component; null where /proc is unavailable. */
  cpuMsPerRequest: Record<string, number> | null;
  /**
   * Gateway only: its usage rows for this run (written in `waitUntil` after each response) and the
   * timings it recorded in them, measured inside the worker from handler start.
   */
  recorded: (Recorded & { expected: number }) | null;
}

/** What the gateway adds: gateway − direct. */
export interface Added {
  p50Ms: number | null;
  p90Ms: number | null;
  p99Ms: number | null;
  ttftP50Ms: number | null;
  ttftP99Ms: number | null;
  /** Relative throughput change, in percent (negative: the gateway serves fewer requests per second). */
  throughputPct: number | null;
  cpuMsPerRequest: number | null;
}

const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits;

/** Nearest-rank percentile of an ascending array; null for an empty one. */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1] ?? null;
}

function percentiles(values: readonly number[]): Percentiles | null {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number) => round(percentile(sorted, p) ?? 0);
  return sorted.length === 0 ? null : { p50: at(50), p90: at(90), p99: at(99), max: at(100) };
}

/**
 * Splits a CPU delta into components per request. The bench process holds both the load thread
 * (`client`, measured by the thread itself) and the stack's Upstash-REST and Neon-WebSocket
 * adapters (`adapters`: the rest of the process).
 */
function perRequest(cpu: CpuSnapshot | null, clientCpuMs: number, ok: number): Record<string, number> | null {
  if (!cpu || ok === 0) return null;
  const { process: own = 0, ...others } = cpu;
  const parts: Record<string, number> = { client: clientCpuMs, adapters: Math.max(0, own - clientCpuMs), ...others };
  const result: Record<string, number> = {};
  let total = 0;
  for (const [name, ms] of Object.entries(parts)) {
    result[name] = round(ms / ok, 3);
    total += ms;
  }
  result.total = round(total / ok, 3);
  return result;
}

/** Summarises one measured run. */
export function summarisePhase(
  target: PhaseSummary["target"],
  url: string,
  load: LoadResult,
  cpu: CpuSnapshot | null,
  recorded: PhaseSummary["recorded"],
): PhaseSummary {
  const ok = load.latenciesMs.length;
  return {
    target,
    url,
    requests: load.sent,
    ok,
    errors: load.sent - ok,
    errorKinds: load.errors,
    deadlineHit: load.deadlineHit,
    wallMs: round(load.wallMs, 1),
    throughputRps: round(ok / (load.wallMs / 1000), 1),
    latencyMs: percentiles(load.latenciesMs),
    ttftMs: percentiles(load.ttftsMs),
    cpuMsPerRequest: perRequest(cpu, load.clientCpuMs, ok),
    recorded,
  };
}

/** gateway − direct for every figure both runs have. */
export function added(direct: PhaseSummary, gateway: PhaseSummary): Added {
  const diff = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? null : round(b - a));
  return {
    p50Ms: diff(direct.latencyMs?.p50, gateway.latencyMs?.p50),
    p90Ms: diff(direct.latencyMs?.p90, gateway.latencyMs?.p90),
    p99Ms: diff(direct.latencyMs?.p99, gateway.latencyMs?.p99),
    ttftP50Ms: diff(direct.ttftMs?.p50, gateway.ttftMs?.p50),
    ttftP99Ms: diff(direct.ttftMs?.p99, gateway.ttftMs?.p99),
    throughputPct: direct.throughputRps > 0 ? round((gateway.throughputRps / direct.throughputRps - 1) * 100, 1) : null,
    cpuMsPerRequest: diff(direct.cpuMsPerRequest?.total, gateway.cpuMsPerRequest?.total),
  };
}
