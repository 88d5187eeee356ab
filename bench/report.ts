import { mkdir, writeFile } from "node:fs/promises";
import { formatProfiles, type ProfilesBenchResult } from "./profiles.ts";
import { formatCache, type CacheBenchResult } from "./cache.ts";
import { fedattnTargets, formatFedattn, type FedattnBenchResult } from "./fedattn.ts";
import { formatPriority, priorityTargets, type PriorityBenchResult } from "./priority.ts";
import { cpus, release } from "node:os";
import { join } from "node:path";
import type { BenchArgs } from "./args.ts";
import { MODES, OUTPUT_TOKENS, type CompareResult, type Mode } from "./compare.ts";
import { redisShare, sumAdmissions } from "./lib/distance.ts";
import type { RoutingResult } from "./routing.ts";
import { formatExactness, type ExactnessResult } from "./exactness.ts";

/** One of the issue's targets, checked against this run. */
export interface TargetCheck {
  goal: string;
  measured: string;
  met: boolean | null;
}

/** Everything a run produced. */
export interface BenchReport {
  generatedAt: string;
  machine: { os: string; cpus: number; cpuModel: string; node: string; note: string };
  settings: BenchArgs & { outputTokens: number };
  compare: CompareResult;
  /** The full path at each Redis write RTT ("Distance to the Redis primary"). */
  distance: DistanceRow[];
  routing: RoutingResult | null;
  /** The multi-isolate exactness run, when it ran. */
  exactness: ExactnessResult | null;
  /** The streaming profiles' CPU per streamed request (bench/profiles.ts); absent in reports from before it. */
  profiles?: ProfilesBenchResult | null;
  /** The response and embeddings caches, hit against miss (bench/cache.ts); absent in reports from before it. */
  cache?: CacheBenchResult | null;
  /** Federated-attention syncs through the coordinator and in process (bench/fedattn.ts); absent in reports from before it. */
  fedattn?: FedattnBenchResult | null;
  /** The mixed-priority run at 150 % of capacity (bench/priority.ts); absent in reports from before it. */
  priority?: PriorityBenchResult | null;
  targets: TargetCheck[];
}

/** A p50 and p99 in ms; null where not measured. */
export interface Percentiles {
  p50: number | null;
  p99: number | null;
}

/** The full path at one Redis write RTT, "added" being the target minus the engine alone at concurrency 1. */
export interface DistanceRow {
  writeRttMs: number;
  target: string;
  streamFirstByteAdded: Percentiles;
  nonstreamAdded: Percentiles;
  /** Share (0 to 1) of admissions that waited on a Redis round trip: in the measured probe rounds (both modes) and in the wrk runs (both modes); null: not counted. */
  waitedOnRedis: { probe: number | null; load: number | null };
  /** CPU ms of the target's workerd per request in the wrk runs. */
  workerCpuMsPerRequest: Record<Mode, number | null>;
}

/** Facts about this machine for the report header. */
export function machineInfo(): BenchReport["machine"] {
  const list = cpus();
  return {
    os: `${process.platform} ${release()}`,
    cpus: list.length,
    cpuModel: list[0]?.model.trim() ?? "unknown",
    node: process.version,
    note: `Every process (load generator, engine, backplane, workerd, peers, Redis, Postgres) shares this machine's ${list.length} cores.`,
  };
}

const f = (n: number | null | undefined, digits = 2) => (n === undefined || n === null || Number.isNaN(n) ? "-" : n.toFixed(digits));
const pct = (share: number | null) => (share === null ? "n/a" : `${(share * 100).toFixed(1)} %`);
const orNull = (n: number | undefined) => (n === undefined || Number.isNaN(n) ? null : n);

/** A target's latency at concurrency 1 minus the engine's (ms); undefined when either was not measured. */
function addedLatency(compare: CompareResult, target: string, mode: Mode, edge: "firstByte" | "lastByte", p: "p50" | "p99"): number | undefined {
  const value = compare.latency[mode]?.[target]?.[edge][p];
  const engine = compare.latency[mode]?.engine?.[edge][p];
  return value === undefined || engine === undefined || Number.isNaN(value) || Number.isNaN(engine) ? undefined : value - engine;
}

/** The "Distance to the Redis primary" rows of a comparison, nearest first. */
export function distanceRows(compare: CompareResult): DistanceRow[] {
  return compare.distance.map((run) => {
    const added = (mode: Mode, edge: "firstByte" | "lastByte"): Percentiles => ({
      p50: orNull(addedLatency(compare, run.target, mode, edge, "p50")),
      p99: orNull(addedLatency(compare, run.target, mode, edge, "p99")),
    });
    const load = run.admissions.load;
    return {
      writeRttMs: run.writeRttMs,
      target: run.target,
      streamFirstByteAdded: added("stream", "firstByte"),
      nonstreamAdded: added("nonstream", "lastByte"),
      waitedOnRedis: {
        probe: redisShare(sumAdmissions(MODES.map((m) => run.admissions.probe[m]))),
        load: load === null ? null : redisShare(sumAdmissions(MODES.map((m) => load[m]))),
      },
      workerCpuMsPerRequest: { nonstream: orNull(compare.throughput?.nonstream[run.target]?.cpuMsPerRequest.workerd), stream: orNull(compare.throughput?.stream[run.target]?.cpuMsPerRequest.workerd) },
    };
  });
}

/** The issue's targets, evaluated on this run's numbers (null: not measured in this run). */
export function checkTargets(compare: CompareResult, routing: RoutingResult | null, exactness: ExactnessResult | null = null, fedattn: FedattnBenchResult | null = null, priority: PriorityBenchResult | null = null): TargetCheck[] {
  const added = (mode: Mode, edge: "firstByte" | "lastByte", p: "p50" | "p99") => addedLatency(compare, "switchyard", mode, edge, p);
  const check = (goal: string, value: number | undefined, limit: number, unit = "ms"): TargetCheck => ({
    goal,
    measured: value === undefined ? "not measured" : `${f(value)} ${unit}`,
    met: value === undefined ? null : value <= limit,
  });
  const checks = [
    check("streaming first byte added by the full path, p50 ≤ 1 ms", added("stream", "firstByte", "p50"), 1),
    check("streaming first byte added by the full path, p99 ≤ 10 ms", added("stream", "firstByte", "p99"), 10),
    check("non-streaming latency added by the full path, p50 ≤ 1 ms", added("nonstream", "lastByte", "p50"), 1),
  ];
  const tp = compare.throughput;
  for (const mode of MODES) {
    const cpu = (target: string, component: string) => tp?.[mode]?.[target]?.cpuMsPerRequest[component];
    const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || b === 0 ? undefined : a / b);
    checks.push(check(`${mode}: worker hop CPU per request ≤ 1.5 × bare Hono forwarder on workerd`, ratio(cpu("switchyard", "workerd"), cpu("hono-workerd", "hop")), 1.5, "×"));
    checks.push(check(`${mode}: backplane CPU per request ≤ 1.5 × bare Hono forwarder on Node`, ratio(cpu("backplane", "hop"), cpu("hono-node", "hop")), 1.5, "×"));
    const sy = tp?.[mode]?.switchyard?.rps;
    const pk = tp?.[mode]?.portkey?.rps;
    checks.push({
      goal: `${mode}: full-path throughput ≥ the Portkey gateway's (one hop)`,
      measured: sy === undefined || pk === undefined ? "not measured" : `${f(sy, 0)} vs ${f(pk, 0)} req/s`,
      met: sy === undefined || pk === undefined ? null : sy >= pk,
    });
  }
  checks.push(...distanceChecks(compare), ...policyChecks(compare));
  const rr = routing?.unequal.find((r) => r.strategy === "round-robin")?.ttftP90Ms;
  const ll = routing?.unequal.find((r) => r.strategy === "least-load")?.ttftP90Ms;
  checks.push({
    goal: "exactness across isolates: zero overshoot, at least 95 % of each limit used",
    measured: exactness === null ? "not measured" : exactness.passed ? `held (${exactness.workerds} workerd, ${exactness.concurrency} clients)` : exactness.failures.join("; "),
    met: exactness === null ? null : exactness.passed,
  });
  checks.push({
    goal: "routing: least-load p90 TTFT ≥ 5 × better than round-robin (unequal queues)",
    measured: rr === undefined || ll === undefined ? "not measured" : `${f(rr / ll, 1)} × (${f(rr, 0)} vs ${f(ll, 0)} ms)`,
    met: rr === undefined || ll === undefined ? null : rr / ll >= 5,
  });
  checks.push(...fedattnTargets(fedattn));
  checks.push(...priorityTargets(priority));
  return checks;
}

/**
 * Distance costs nothing on the common path: at the farthest write RTT of the run (80 ms by default),
 * added p50 within 1 ms of the same run at 0 ms and p99 at most one RTT above it, for streaming first
 * byte and non-streaming latency, and at most 1 % of requests waiting on Redis (in the probe and in
 * the wrk runs alike).
 */
function distanceChecks(compare: CompareResult): TargetCheck[] {
  const rows = distanceRows(compare);
  const near = rows.find((r) => r.writeRttMs === 0);
  const far = rows.filter((r) => r.writeRttMs > 0).at(-1);
  const at = far === undefined ? "at the farthest write RTT" : `at ${far.writeRttMs} ms write RTT`;
  const versus = (goal: string, pick: (r: DistanceRow) => number | null, slack: number): TargetCheck => {
    const a = far ? pick(far) : null;
    const b = near ? pick(near) : null;
    if (a === null || b === null) return { goal, measured: "not measured", met: null };
    const sign = a - b >= 0 ? "+" : "−";
    return { goal, measured: `${sign}${f(Math.abs(a - b))} ms (${f(a)} vs ${f(b)})`, met: a - b <= slack };
  };
  const rtt = far?.writeRttMs ?? 0;
  const checks = [
    versus(`${at}: streaming first byte added, p50 ≤ the 0 ms run's + 1 ms`, (r) => r.streamFirstByteAdded.p50, 1),
    versus(`${at}: streaming first byte added, p99 ≤ the 0 ms run's + one RTT`, (r) => r.streamFirstByteAdded.p99, rtt),
    versus(`${at}: non-streaming latency added, p50 ≤ the 0 ms run's + 1 ms`, (r) => r.nonstreamAdded.p50, 1),
    versus(`${at}: non-streaming latency added, p99 ≤ the 0 ms run's + one RTT`, (r) => r.nonstreamAdded.p99, rtt),
  ];
  const shares = far ? [far.waitedOnRedis.probe, far.waitedOnRedis.load].filter((x): x is number => x !== null) : [];
  checks.push({
    goal: `${at}: requests that waited on Redis ≤ 1 % (probe and wrk runs)`,
    measured: far === undefined ? "not measured" : shares.length === 0 ? "n/a (the gateway does not count admissions)" : `${pct(Math.max(...shares))} (probe ${pct(far.waitedOnRedis.probe)}, wrk ${pct(far.waitedOnRedis.load)})`,
    met: shares.length === 0 ? null : Math.max(...shares) <= 0.01,
  });
  return checks;
}

/**
 * Policy is nearly free, with Redis next door: the policy overhead (full path minus backplane alone
 * minus the bare Hono hop on workerd, each as added over the engine) at most 0.5 ms p50, and the
 * worker's CPU per request at most 2 × the bare Hono forwarder's on workerd.
 */
function policyChecks(compare: CompareResult): TargetCheck[] {
  const overhead = (mode: Mode, edge: "firstByte" | "lastByte") => {
    const [sy, bp, hono] = ["switchyard", "backplane", "hono-workerd"].map((t) => addedLatency(compare, t, mode, edge, "p50"));
    return sy === undefined || bp === undefined || hono === undefined ? undefined : sy - bp - hono;
  };
  const measure = (goal: string, value: number | undefined, limit: number, unit: string): TargetCheck => ({
    goal,
    measured: value === undefined ? "not measured" : `${f(value)} ${unit}`,
    met: value === undefined ? null : value <= limit,
  });
  const checks = [
    measure("0 ms write RTT: policy overhead on streaming first byte (full path − backplane − bare Hono hop on workerd), p50 ≤ 0.5 ms", overhead("stream", "firstByte"), 0.5, "ms"),
    measure("0 ms write RTT: policy overhead on non-streaming latency (full path − backplane − bare Hono hop on workerd), p50 ≤ 0.5 ms", overhead("nonstream", "lastByte"), 0.5, "ms"),
  ];
  for (const mode of MODES) {
    const worker = compare.throughput?.[mode]?.switchyard?.cpuMsPerRequest.workerd;
    const hono = compare.throughput?.[mode]?.["hono-workerd"]?.cpuMsPerRequest.hop;
    checks.push(measure(`${mode}, 0 ms write RTT: worker CPU per request ≤ 2 × bare Hono forwarder on workerd`, worker === undefined || hono === undefined || hono === 0 ? undefined : worker / hono, 2, "×"));
  }
  // The same for streams with STREAM_TAP=node (the backplane taps them; the worker pipes natively).
  const nodeTap = compare.throughput?.stream?.["switchyard-node-tap"]?.cpuMsPerRequest.workerd;
  const honoStream = compare.throughput?.stream?.["hono-workerd"]?.cpuMsPerRequest.hop;
  if (nodeTap !== undefined) {
    checks.push(measure("stream, STREAM_TAP=node: worker CPU per request ≤ 2 × bare Hono forwarder on workerd", honoStream === undefined || honoStream === 0 ? undefined : nodeTap / honoStream, 2, "×"));
  }
  return checks;
}

function mdTable(header: string[], rows: string[][]): string {
  return [`| ${header.join(" | ")} |`, `|${header.map((_, i) => (i === 0 ? "---" : "---:")).join("|")}|`, ...rows.map((r) => `| ${r.join(" | ")} |`)].join("\n");
}

/** The report as markdown (the same tables go to docs/performance.md). */
export function formatReport(r: BenchReport): string {
  const out: string[] = [];
  out.push(`# Switchyard benchmark, ${r.generatedAt}`, "");
  out.push(`Machine: ${r.machine.cpuModel}, ${r.machine.cpus} cores, ${r.machine.os}, Node ${r.machine.node}. ${r.machine.note}`, "");
  out.push(`Engine: simulated vLLM in fast mode (no artificial delay, ${r.settings.outputTokens} output tokens). Latency: ${r.settings.rounds} rounds at concurrency 1, targets interleaved. Throughput: wrk, ${r.settings.concurrency} connections, ${r.settings.throughputRounds} × ${r.settings.durationSec} s per target and mode, interleaved.`, "");
  if (r.compare.skipped.length > 0) out.push(`Skipped: ${r.compare.skipped.join("; ")}.`, "");
  out.push("## Targets", "", mdTable(["target", "measured", "met"], r.targets.map((t) => [t.goal, t.measured, t.met === null ? "-" : t.met ? "yes" : "**no**"])), "");
  const names = r.compare.targets.map((t) => t.name);
  for (const mode of MODES) {
    const lat = r.compare.latency[mode] ?? {};
    const engine = lat.engine;
    out.push(`## ${mode === "stream" ? "Streaming" : "Non-streaming"}: latency at concurrency 1 (ms)`, "");
    out.push(
      mdTable(
        ["target", "first byte p50", "p99", "last byte p50", "p99", "added first byte p50", "added last byte p50"],
        names.map((n) => {
          const row = lat[n];
          return [n, f(row?.firstByte.p50), f(row?.firstByte.p99), f(row?.lastByte.p50), f(row?.lastByte.p99), f(row && engine ? row.firstByte.p50 - engine.firstByte.p50 : undefined), f(row && engine ? row.lastByte.p50 - engine.lastByte.p50 : undefined)];
        }),
      ),
      "",
    );
    const tp = r.compare.throughput?.[mode];
    if (tp) {
      const components = [...new Set(Object.values(tp).flatMap((row) => Object.keys(row.cpuMsPerRequest)))].filter((c) => c !== "hop");
      out.push(`## ${mode === "stream" ? "Streaming" : "Non-streaming"}: throughput at ${r.settings.concurrency} connections, CPU ms per request`, "");
      out.push(
        mdTable(
          ["target", "req/s", "p50 ms", "p99 ms", "hop CPU", ...components],
          names.map((n) => {
            const row = tp[n];
            return [n, f(row?.rps, 0), f(row?.p50Ms), f(row?.p99Ms), f(row?.cpuMsPerRequest.hop, 3), ...components.map((c) => f(row?.cpuMsPerRequest[c], 3))];
          }),
        ),
        "",
      );
    }
  }
  if (r.distance.length > 0) {
    out.push("## Distance to the Redis primary", "");
    out.push(
      "The full path again with every Redis write that many ms away (the Upstash-REST adapter's write RTT, half on the way there and half back), each on its own edge. Added: the target minus the engine alone, at concurrency 1 (ms). Waited on Redis: admissions that took a synchronous Redis round trip (`switchyard_admissions_total{path=\"redis\"}` over all of them, from `GET /admin/metrics`), in the measured probe rounds and in the wrk runs; n/a when the gateway does not count them. Worker CPU: the target's workerd, ms per request in the wrk runs.",
      "",
    );
    out.push(
      mdTable(
        ["write RTT", "target", "streaming first byte added p50", "p99", "non-streaming added p50", "p99", "waited on Redis (probe)", "(wrk)", "worker CPU non-streaming", "streaming"],
        r.distance.map((d) => [`${d.writeRttMs} ms`, d.target, f(d.streamFirstByteAdded.p50), f(d.streamFirstByteAdded.p99), f(d.nonstreamAdded.p50), f(d.nonstreamAdded.p99), pct(d.waitedOnRedis.probe), r.compare.throughput === null ? "-" : pct(d.waitedOnRedis.load), f(d.workerCpuMsPerRequest.nonstream, 3), f(d.workerCpuMsPerRequest.stream, 3)]),
      ),
      "",
    );
  }
  out.push("## Correctness", "", mdTable(["target", ...MODES], names.map((n) => [n, ...MODES.map((m) => r.compare.correctness[m]?.[n] ?? "-")])), "");
  if (r.exactness) out.push(formatExactness(r.exactness), "");
  if (r.profiles) out.push(formatProfiles(r.profiles), "");
  if (r.cache) out.push(formatCache(r.cache), "");
  if (r.fedattn) out.push(formatFedattn(r.fedattn), "");
  if (r.priority) out.push(formatPriority(r.priority), "");
  if (r.routing) {
    out.push("## Routing (time to first token seen by the client, ms)", "");
    out.push(`Engines: ${r.routing.nodes.map((n) => `${n.id} (${n.engine})`).join(", ")}.`, "");
    const rows = (list: RoutingResult["unequal"], workload: string) =>
      list.map((x) => [workload, x.strategy, String(x.requests), String(x.errors), f(x.ttftP50Ms), f(x.ttftP90Ms), x.prefixHitRate === null ? "-" : `${f(x.prefixHitRate * 100, 0)} %`]);
    out.push(mdTable(["workload", "strategy", "requests", "errors", "TTFT p50", "TTFT p90", "prefix cache hits"], [...rows(r.routing.unequal, "unequal queues"), ...rows(r.routing.prefixes, "shared prefixes")]), "");
  }
  if (r.compare.errors.length > 0) out.push("## Errors", "", ...r.compare.errors.map((e) => `- ${e}`), "");
  out.push("Targets: " + r.compare.targets.map((t) => `\`${t.name}\`: ${t.description}`).join("; ") + ".");
  return out.join("\n");
}

/** Writes the report as `<time>.json` and `.md` plus `latest.*` under `dir`; returns the markdown path. */
export async function writeReport(report: BenchReport, dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  const stamp = report.generatedAt.replace(/[:.]/g, "-");
  const md = formatReport(report);
  const json = `${JSON.stringify(report, null, 2)}\n`;
  await Promise.all([
    writeFile(join(dir, `${stamp}.json`), json),
    writeFile(join(dir, `${stamp}.md`), `${md}\n`),
    writeFile(join(dir, "latest.json"), json),
    writeFile(join(dir, "latest.md"), `${md}\n`),
  ]);
  return join(dir, "latest.md");
}

export { OUTPUT_TOKENS };
