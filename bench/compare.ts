/**
 * The side-by-side comparison: the same simulated engine (fast mode) reached directly, through the
 * backplane alone, through the full Switchyard path on plain workerd (auth, four rate-limit layers,
 * concurrency, budgets, metering), and through the peers (nginx, Portkey) and the bare Hono
 * forwarders (on workerd and on Node) that are the CPU baselines. Latency at concurrency 1 is
 * probed with every target interleaved; throughput at a fixed concurrency with wrk, in rounds
 * interleaved across targets, with each hop's CPU time from /proc. See bench/README.md.
 */
import { Redis } from "ioredis";
import { openDb } from "../dev/db.ts";
import { LocalNode } from "../dev/nodes.ts";
import { processTree, sampleCpu, cpuDelta, type CpuSnapshot } from "./cpu.ts";
import { startEdge, waitForNodes, type Edge } from "./lib/edge.ts";
import { nginxAvailable, startNginx, startNodeForwarder, startPortkey } from "./lib/peers.ts";
import { probeInThread, shuffled, type ProbeSample, type ProbeTarget } from "./lib/probe.ts";
import { nodeSecret, signedPool } from "./lib/signed.ts";
import { startHonoForwarder } from "./lib/workerd.ts";
import { runWrk, wrkAvailable, type WrkResult } from "./lib/wrk.ts";
import { NODE_HEADER } from "../schema/contracts/signing.ts";
import { percentile } from "./stats.ts";
import type { Teardown } from "./teardown.ts";

/** How hard to measure. */
export interface CompareOptions {
  pgAdminUrl: string;
  redisUrl: string;
  host: string;
  /** Probe rounds at concurrency 1 (each sends one request per target and mode). */
  rounds: number;
  /** wrk connections for the throughput runs. */
  concurrency: number;
  /** Seconds per wrk run; each target and mode runs `throughputRounds` times, interleaved. */
  durationSec: number;
  throughputRounds: number;
  /** Only the project's own targets (engine, backplane, Switchyard, the two forwarders). */
  ownOnly: boolean;
  teardown: Teardown;
  log: (line: string) => void;
}

export type Mode = "nonstream" | "stream";
export const MODES: readonly Mode[] = ["nonstream", "stream"];
const PATH = "/v1/chat/completions";
/** The node id of the benchmark's backplane. */
const BENCH_NODE = "bench-1";
export const MODEL = "sim-llama-8b";
/** Output tokens of every answer (fixed: the engine runs with --output-tokens and ignore_eos). */
export const OUTPUT_TOKENS = 16;

export function chatBody(mode: Mode): string {
  return JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "Say something about switchyards." }], max_tokens: OUTPUT_TOKENS, stream: mode === "stream" });
}

/** One target: where requests go, the headers they need, and the processes that are its hop. */
interface Target {
  name: string;
  description: string;
  url: string;
  headers: () => Record<string, string>;
  /** A backplane's node secret: every request must carry its own signature (each is accepted once). */
  signWith?: string;
  /** Processes whose CPU is this hop's (the engine's is counted separately). */
  pids: () => number[];
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

export interface CompareResult {
  targets: { name: string; description: string }[];
  skipped: string[];
  latency: Record<Mode, Record<string, LatencyRow>>;
  throughput: Record<Mode, Record<string, ThroughputRow>> | null;
  correctness: Record<Mode, Record<string, string>>;
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

// ---------------------------------------------------------------- setup

async function startTargets(opts: CompareOptions): Promise<{ edge: Edge; targets: Target[]; skipped: string[]; enginePid: () => number[]; extraPids: () => Record<string, number[]> }> {
  const { teardown, log, host } = opts;
  log("Starting the edge (worker on plain workerd, Postgres, Upstash-REST and Neon adapters)…");
  const edge = await startEdge({ pgAdminUrl: opts.pgAdminUrl, redisUrl: opts.redisUrl, host });
  teardown.add("edge", () => edge.close());

  const db = openDb(edge.databaseUrl);
  teardown.add("database client", () => db.close());
  const redis = new Redis(opts.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  teardown.add("redis client", () => Promise.resolve(redis.disconnect()));
  log("Starting the simulated engine (fast mode) and the backplane…");
  const node = new LocalNode(
    {
      id: BENCH_NODE,
      region: edge.regionId,
      simArgs: ["--ttft-ms", "0", "--inter-token-ms", "0", "--output-tokens", String(OUTPUT_TOKENS), "--max-concurrency", "1024"],
      backplaneEnv: { BACKPLANE_HEARTBEAT_INTERVAL_MS: "1000" },
      simName: "engine",
      backplaneName: "backplane",
    },
    { root: process.cwd(), host, gatewayUrl: edge.url, masterSecret: edge.nodeSigningSecret, echo: false, db, redis, redisPrefix: edge.redisPrefix },
  );
  teardown.add("node", () => node.close());
  await node.start();
  await waitForNodes(edge, [BENCH_NODE]);

  const engineUrl = node.simUrl;
  const honoWorkerd = await startHonoForwarder({ upstream: engineUrl, host });
  teardown.add("hono forwarder (workerd)", () => honoWorkerd.close());
  const honoNode = await startNodeForwarder({ upstream: engineUrl, host });
  teardown.add("hono forwarder (node)", () => honoNode.close());

  const none = () => ({});
  const targets: Target[] = [
    { name: "engine", description: "the simulated vLLM engine, directly", url: `${engineUrl}${PATH}`, headers: none, pids: () => [] },
    {
      name: "backplane",
      description: "backplane → engine (signed request)",
      url: `${node.backplaneUrl}${PATH}`,
      // The probe signs each request itself; wrk sends a pool signed just before its run (poolSize).
      headers: () => ({ [NODE_HEADER]: BENCH_NODE }),
      signWith: await nodeSecret(edge.nodeSigningSecret, BENCH_NODE),
      pids: () => [node.backplane.process.pid ?? 0],
    },
    {
      name: "switchyard",
      description: "worker on workerd → backplane → engine (auth, 4 rate-limit layers, concurrency, budget, metering)",
      url: `${edge.url}${PATH}`,
      headers: () => ({ authorization: `Bearer ${edge.apiKey}` }),
      pids: () => [edge.workerdPid, node.backplane.process.pid ?? 0],
    },
    { name: "hono-workerd", description: "bare Hono forwarder on workerd → engine", url: `${honoWorkerd.url}${PATH}`, headers: none, pids: () => [honoWorkerd.pid] },
    { name: "hono-node", description: "bare Hono forwarder on Node (@hono/node-server) → engine", url: `${honoNode.url}${PATH}`, headers: none, pids: () => [honoNode.pid] },
  ];
  const skipped: string[] = [];
  if (!opts.ownOnly) {
    if (nginxAvailable()) {
      const nginx = await startNginx({ upstream: engineUrl, host });
      teardown.add("nginx", () => nginx.close());
      targets.push({ name: "nginx", description: "nginx reverse proxy → engine (1 worker, keep-alive, no buffering)", url: `${nginx.url}${PATH}`, headers: none, pids: () => processTree(nginx.pid).map((p) => p.pid) });
    } else skipped.push("nginx (not installed: apt-get install nginx-light)");
    const portkey = await startPortkey({ host });
    teardown.add("portkey", () => portkey.close());
    targets.push({
      name: "portkey",
      description: "Portkey gateway (Node) → engine",
      url: `${portkey.url}${PATH}`,
      headers: () => portkey.headersFor(engineUrl),
      pids: () => processTree(portkey.pid).map((p) => p.pid),
    });
  }
  return {
    edge,
    targets,
    skipped,
    enginePid: () => [node.sim.process.pid ?? 0],
    extraPids: () => ({ workerd: [edge.workerdPid], backplane: [node.backplane.process.pid ?? 0] }),
  };
}

/** The most pre-signed requests one wrk run gets: the backplane keeps at most 100 000 nonces (replay.ts). */
export const POOL_MAX = 100_000;
/** Head room over the expected number of requests of a run. */
const POOL_MARGIN = 1.5;

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

  for (const mode of MODES) {
    const body = chatBody(mode);
    log(`Latency at concurrency 1, ${mode}: ${opts.rounds} rounds over ${targets.length} targets, interleaved…`);
    const probeTargets: ProbeTarget[] = [];
    for (const t of targets) probeTargets.push({ name: t.name, url: t.url, headers: t.headers(), body, ...(t.signWith === undefined ? {} : { signWith: t.signWith }) });
    const samples = await probeInThread({ targets: probeTargets, rounds: opts.rounds, warmup: 5, timeoutMs: 30_000 });
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
  if (!wrkAvailable()) setup.skipped.push("throughput (wrk not installed: apt-get install wrk)");
  else {
    throughput = { nonstream: {}, stream: {} };
    const totals = new Map<string, { requests: number; seconds: number; p50: number[]; p99: number[]; cpu: CpuSnapshot }>();
    const bestRps = new Map<string, number>();
    const components = (t: Target) => ({
      pids: { hop: t.pids(), engine: setup.enginePid(), ...setup.extraPids(), adapters: [process.pid] },
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
          const before = sampleCpu(components(t));
          const result: WrkResult = await runWrk({ url: t.url, method: "POST", headers, body, connections: opts.concurrency, durationSec: opts.durationSec, timeoutSec: 10, ...(pool === undefined ? {} : { pool }) });
          const after = sampleCpu(components(t));
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
  return { targets: targets.map((t) => ({ name: t.name, description: t.description })), skipped: setup.skipped, latency, throughput, correctness, errors };
}
