/**
 * The side-by-side comparison: the same simulated engine (fast mode) reached directly, through the
 * backplane alone, through the full Switchyard path on plain workerd (auth, four rate-limit layers,
 * concurrency, budgets, metering; with Redis next door and at the distances of `redisWriteRtts`),
 * and through the peers (nginx, Portkey) and the bare Hono forwarders (on workerd and on Node) that
 * are the CPU baselines (targets.ts). Latency at concurrency 1 is probed with every target
 * interleaved; throughput at a fixed concurrency with wrk, in rounds interleaved across targets,
 * with each hop's CPU time from /proc. See bench/README.md.
 */
import { sampleCpu, cpuDelta, type CpuSnapshot } from "./cpu.ts";
import { admissionsBetween, parseAdmissions, readAdmissions, sumAdmissions, type AdmissionCount } from "./lib/distance.ts";
import { probeInThread, shuffled, type Checkpoint, type ProbeSample, type ProbeTarget } from "./lib/probe.ts";
import { signedPool } from "./lib/signed.ts";
import { runWrk, wrkAvailable, type WrkResult } from "./lib/wrk.ts";
import { percentile } from "./stats.ts";
import { BENCH_NODE, chatBody, MODES, PATH, startTargets, type Mode, type Target, type TargetOptions } from "./targets.ts";

export { MODES, OUTPUT_TOKENS, type Mode } from "./targets.ts";

/** How hard to measure. */
export interface CompareOptions extends TargetOptions {
  /** Probe rounds at concurrency 1 (each sends one request per target and mode). */
  rounds: number;
  /** wrk connections for the throughput runs. */
  concurrency: number;
  /** Seconds per wrk run; each target and mode runs `throughputRounds` times, interleaved. */
  durationSec: number;
  throughputRounds: number;
}

/** Timings of one target and mode at concurrency 1 (ms). */
export interface LatencyRow {
  firstByte: { p50: number; p99: number };
  lastByte: { p50: number; p99: number };
  samples: number;
}

/** One target and mode under load. */
export interface ThroughputRow {
  requests: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU ms per request of every component that worked during the run (hops, engine, adapters, Redis, Postgres). */
  cpuMsPerRequest: Record<string, number>;
}

/**
 * The full path at one Redis write RTT: its target, and the admissions its edge counted during the
 * measured probe rounds and during the wrk runs (null: not counted, or not measured).
 */
export interface DistanceRun {
  writeRttMs: number;
  target: string;
  admissions: {
    probe: Record<Mode, AdmissionCount | null>;
    load: Record<Mode, AdmissionCount | null> | null;
  };
}

export interface CompareResult {
  targets: { name: string; description: string }[];
  skipped: string[];
  latency: Record<Mode, Record<string, LatencyRow>>;
  throughput: Record<Mode, Record<string, ThroughputRow>> | null;
  correctness: Record<Mode, Record<string, string>>;
  /** The full path at each Redis write RTT, nearest first. */
  distance: DistanceRun[];
  errors: string[];
}

// ---------------------------------------------------------------- correctness

/** A body with its per-request fields removed, so answers from different hops compare equal. */
export function normalizeBody(mode: Mode, body: string): string {
  const strip = (json: unknown): unknown => {
    if (typeof json !== "object" || json === null) return json;
    const { id: _id, created: _created, ...rest } = json as Record<string, unknown>;
    return rest;
  };
  if (mode === "nonstream") return JSON.stringify(strip(JSON.parse(body)));
  return body
    .split("\n\n")
    .map((e) => e.trim())
    .filter((e) => e.startsWith("data: "))
    .map((e) => (e === "data: [DONE]" ? e : `data: ${JSON.stringify(strip(JSON.parse(e.slice(6))))}`))
    .join("\n");
}

/** The most pre-signed requests one wrk run gets: the backplane keeps at most 100 000 nonces (replay.ts). */
export const POOL_MAX = 100_000;
/**
 * Head room over the expected number of requests of a run: a run can go well past the best rate an
 * earlier one measured on a shared 2-core machine (one here went past 1.5×), and running out is an error.
 */
const POOL_MARGIN = 3;

/**
 * Pre-signed requests for one wrk run of a signed target, from the fastest rate it could reach: the
 * best rate measured in an earlier run of the same mode, else Little's law with the latency at
 * concurrency 1 (connections / p50; latency only grows under load, so no closed-loop client beats
 * it), else 20 000/s. Times the margin, plus one per connection, at most POOL_MAX.
 */
export function poolSize(opts: { connections: number; durationSec: number; p50Ms: number; measuredRps: number | undefined }): number {
  const bound = opts.measuredRps ?? (Number.isFinite(opts.p50Ms) && opts.p50Ms > 0 ? (opts.connections * 1_000) / opts.p50Ms : 20_000);
  return Math.min(POOL_MAX, Math.ceil(bound * opts.durationSec * POOL_MARGIN) + opts.connections);
}

// ---------------------------------------------------------------- measuring

function latencyRows(samples: ProbeSample[]): Record<string, LatencyRow> {
  const byTarget = new Map<string, ProbeSample[]>();
  for (const s of samples) byTarget.set(s.target, [...(byTarget.get(s.target) ?? []), s]);
  const rows: Record<string, LatencyRow> = {};
  for (const [name, list] of byTarget) {
    const ok = list.filter((s) => s.error === null);
    const first = ok.map((s) => s.firstByteMs).sort((a, b) => a - b);
    const last = ok.map((s) => s.lastByteMs).sort((a, b) => a - b);
    rows[name] = {
      firstByte: { p50: percentile(first, 50) ?? NaN, p99: percentile(first, 99) ?? NaN },
      lastByte: { p50: percentile(last, 50) ?? NaN, p99: percentile(last, 99) ?? NaN },
      samples: ok.length,
    };
  }
  return rows;
}


/** Runs the whole comparison; errors (non-200s, unequal bodies) are collected, not thrown. */
export async function runCompare(opts: CompareOptions): Promise<CompareResult> {
  const { log } = opts;
  const setup = await startTargets(opts);
  const { targets } = setup;
  const errors: string[] = [];
  const latency = {} as CompareResult["latency"];
  const correctness = {} as CompareResult["correctness"];
  const distant = targets.filter((t): t is Target & Required<Pick<Target, "distance">> => t.distance !== undefined);
  const probeAdmissions = new Map<string, Record<Mode, AdmissionCount | null>>(distant.map((t) => [t.name, { nonstream: null, stream: null }]));
  // The gateway's counters, read right after the probe's warm-up and after its last round.
  const checkpoints: Checkpoint[] = distant.map((t) => ({ name: t.name, url: `${t.distance.edge.url}/admin/metrics`, headers: { authorization: `Bearer ${t.distance.edge.adminToken}` } }));
  const admissionsIn = (text: string | null | undefined) => (text === null || text === undefined ? null : parseAdmissions(text));

  for (const mode of MODES) {
    const body = chatBody(mode);
    log(`Latency at concurrency 1, ${mode}: ${opts.rounds} rounds over ${targets.length} targets, interleaved…`);
    const probeTargets: ProbeTarget[] = [];
    for (const t of targets) probeTargets.push({ name: t.name, url: t.url, headers: t.headers(), body, ...(t.signWith === undefined ? {} : { signWith: t.signWith }) });
    const probe = await probeInThread({ targets: probeTargets, rounds: opts.rounds, warmup: 5, timeoutMs: 30_000, checkpoints });
    const samples = probe.samples;
    for (const t of distant) {
      const counted = probeAdmissions.get(t.name);
      if (counted) counted[mode] = admissionsBetween(admissionsIn(probe.checkpoints.before[t.name]), admissionsIn(probe.checkpoints.after[t.name]));
    }
    for (const s of samples.filter((x) => x.error !== null).slice(0, 5)) errors.push(`${s.target} ${mode}: ${s.error}`);
    const failed = samples.filter((x) => x.error !== null).length;
    if (failed > 5) errors.push(`… ${failed} failed ${mode} probe requests in all`);
    latency[mode] = latencyRows(samples);
    // Correctness: the first round kept every body; each must equal the engine's.
    const reference = samples.find((s) => s.target === "engine" && s.body !== null && s.error === null)?.body ?? null;
    correctness[mode] = {};
    for (const t of targets) {
      const got = samples.find((s) => s.target === t.name && s.body !== null)?.body ?? null;
      let verdict: string;
      if (reference === null || got === null) verdict = "no body";
      else {
        try {
          verdict = normalizeBody(mode, got) === normalizeBody(mode, reference) ? "equal" : `differs: ${got.slice(0, 200)}`;
        } catch (err) {
          verdict = `unreadable: ${String(err)}`;
        }
      }
      correctness[mode][t.name] = verdict;
      if (verdict !== "equal") errors.push(`${t.name} ${mode}: body ${verdict}`);
    }
  }

  let throughput: CompareResult["throughput"] = null;
  // Admissions counted during each wrk run of a full-path target, by `mode|target`.
  const loadAdmissions = new Map<string, (AdmissionCount | null)[]>();
  if (!wrkAvailable()) setup.skipped.push("throughput (wrk not installed: apt-get install wrk)");
  else {
    throughput = { nonstream: {}, stream: {} };
    const totals = new Map<string, { requests: number; seconds: number; p50: number[]; p99: number[]; cpu: CpuSnapshot }>();
    const bestRps = new Map<string, number>();
    const components = (t: Target) => ({
      pids: { hop: t.pids(), engine: setup.enginePid(), ...(t.components?.() ?? setup.extraPids()), adapters: [process.pid] },
      byName: { redis: "redis-server", postgres: "postgres" },
    });
    for (let round = 0; round < opts.throughputRounds; round++) {
      for (const mode of MODES) {
        for (const t of shuffled(targets)) {
          const body = chatBody(mode);
          log(`Throughput ${mode} round ${round + 1}/${opts.throughputRounds}: ${t.name} (${opts.concurrency} connections, ${opts.durationSec} s)…`);
          const headers = { "content-type": "application/json", ...t.headers() };
          const key = `${mode}|${t.name}`;
          // Signed just before the run (valid 60 s, each once), before the CPU sample starts.
          const size = poolSize({ connections: opts.concurrency, durationSec: opts.durationSec, p50Ms: latency[mode][t.name]?.lastByte.p50 ?? NaN, measuredRps: bestRps.get(key) });
          const pool = t.signWith === undefined ? undefined : await signedPool({ secret: t.signWith, nodeId: BENCH_NODE, path: PATH, body, count: size });
          // The targets measured against "steady load" warm up first: an edge idle while the other
          // targets ran has given its capacity leases back (LEASE_IDLE_MS), and the first second of
          // a cold edge is not the steady state the distance targets are about.
          if (t.distance) await runWrk({ url: t.url, method: "POST", headers, body, connections: opts.concurrency, durationSec: 1, timeoutSec: 10 });
          // Counters are read outside the CPU samples: reading them costs the worker CPU too.
          const admittedBefore = t.distance ? await readAdmissions(t.distance.edge) : null;
          const before = sampleCpu(components(t));
          const result: WrkResult = await runWrk({ url: t.url, method: "POST", headers, body, connections: opts.concurrency, durationSec: opts.durationSec, timeoutSec: 10, ...(pool === undefined ? {} : { pool }) });
          const after = sampleCpu(components(t));
          if (t.distance) loadAdmissions.set(key, [...(loadAdmissions.get(key) ?? []), admissionsBetween(admittedBefore, await readAdmissions(t.distance.edge))]);
          if (result.non2xx > 0 || result.socketErrors > 0) {
            errors.push(`${t.name} ${mode} throughput: ${result.non2xx} non-2xx (${JSON.stringify(result.statuses)}), ${result.socketErrors} socket errors`);
          }
          // Never a replay: the thread stopped sending instead, and wrk divided by the whole duration.
          if (result.poolExhausted > 0) {
            errors.push(`${t.name} ${mode} throughput: the ${size} pre-signed requests ran out before the ${opts.durationSec} s were over, so its rate is understated (poolSize in bench/compare.ts)`);
          }
          bestRps.set(key, Math.max(bestRps.get(key) ?? 0, result.rps));
          const acc = totals.get(key) ?? { requests: 0, seconds: 0, p50: [], p99: [], cpu: {} };
          acc.requests += result.requests;
          acc.seconds += result.durationSec;
          acc.p50.push(result.p50Ms);
          acc.p99.push(result.p99Ms);
          if (before && after) for (const [k, v] of Object.entries(cpuDelta(before, after))) acc.cpu[k] = (acc.cpu[k] ?? 0) + v;
          totals.set(key, acc);
        }
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
    for (const [key, acc] of totals) {
      const [mode, name] = key.split("|") as [Mode, string];
      const perRequest: Record<string, number> = {};
      for (const [k, v] of Object.entries(acc.cpu)) if (k !== "process") perRequest[k] = acc.requests > 0 ? v / acc.requests : NaN;
      throughput[mode][name] = { requests: acc.requests, rps: acc.requests / acc.seconds, p50Ms: median(acc.p50), p99Ms: median(acc.p99), cpuMsPerRequest: perRequest };
    }
  }
  const distance: DistanceRun[] = distant
    .map((t) => ({
      writeRttMs: t.distance.writeRttMs,
      target: t.name,
      admissions: {
        probe: probeAdmissions.get(t.name) ?? { nonstream: null, stream: null },
        load: throughput === null ? null : { nonstream: sumAdmissions(loadAdmissions.get(`nonstream|${t.name}`) ?? [null]), stream: sumAdmissions(loadAdmissions.get(`stream|${t.name}`) ?? [null]) },
      },
    }))
    .sort((a, b) => a.writeRttMs - b.writeRttMs);
  return { targets: targets.map((t) => ({ name: t.name, description: t.description })), skipped: setup.skipped, latency, throughput, correctness, distance, errors };
}
