import { mkdir, writeFile } from "node:fs/promises";
import { cpus, release } from "node:os";
import { dirname } from "node:path";
import type { EngineProfile, Scenario } from "./scenarios.ts";
import type { Added, PhaseSummary } from "./stats.ts";

/** One scenario's two runs and the difference. */
export interface ScenarioResult {
  name: Scenario["name"];
  title: string;
  stream: boolean;
  engine: EngineProfile;
  direct: PhaseSummary;
  gateway: PhaseSummary;
  added: Added;
}

/** Everything written to bench/results/latest.json. */
export interface BenchReport {
  generatedAt: string;
  machine: { os: string; cpus: number; cpuModel: string; node: string };
  settings: { requests: number; concurrency: number; warmupRequests: number; requestTimeoutMs: number; runDeadlineMs: number };
  scenarios: ScenarioResult[];
}

/** Facts about this machine for the report header. */
export function machineInfo(): BenchReport["machine"] {
  const list = cpus();
  return { os: `${process.platform} ${release()}`, cpus: list.length, cpuModel: list[0]?.model.trim() ?? "unknown", node: process.version };
}

/** Pads cells into aligned columns: the first column left, the rest right. */
function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => "  " + row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join("  ")).join("\n");
}

const ms = (n: number | null | undefined) => (n === null || n === undefined ? "-" : n.toFixed(2));
const signed = (n: number | null, suffix = "") => (n === null ? "-" : `${n >= 0 ? "+" : ""}${n.toFixed(suffix === "%" ? 1 : 2)}${suffix}`);

/** CPU components (keys of cpuMsPerRequest) and their column headers. */
const CPU_COLUMNS: [string, string][] = [
  ["client", "client"],
  ["adapters", "adapters"],
  ["wranglerNode", "wrangler"],
  ["workerdProxy", "wd proxy"],
  ["workerdWorker", "wd worker"],
  ["backplane", "backplane"],
  ["sim", "sim"],
  ["postgres", "postgres"],
  ["redis", "redis"],
  ["total", "total"],
];

function scenarioText(s: ScenarioResult): string {
  const lines = [`${s.name}: ${s.title} (engine ${s.engine.description})`];
  const phaseRow = (p: PhaseSummary) => [
    p.target,
    `${p.ok}/${p.requests}`,
    String(p.errors),
    p.throughputRps.toFixed(1),
    ms(p.latencyMs?.p50),
    ms(p.latencyMs?.p90),
    ms(p.latencyMs?.p99),
    ...(s.stream ? [ms(p.ttftMs?.p50), ms(p.ttftMs?.p99)] : []),
  ];
  const a = s.added;
  lines.push(
    table([
      ["", "ok/sent", "errors", "req/s", "p50 ms", "p90 ms", "p99 ms", ...(s.stream ? ["TTFT p50", "TTFT p99"] : [])],
      phaseRow(s.direct),
      phaseRow(s.gateway),
      ["added", "", "", signed(a.throughputPct, "%"), signed(a.p50Ms), signed(a.p90Ms), signed(a.p99Ms), ...(s.stream ? [signed(a.ttftP50Ms), signed(a.ttftP99Ms)] : [])],
    ]),
  );
  const cpuRows = [s.direct, s.gateway].filter((p) => p.cpuMsPerRequest !== null);
  if (cpuRows.length > 0) {
    lines.push("  CPU ms per request, by process:");
    lines.push(
      table([
        ["", ...CPU_COLUMNS.map(([, header]) => header)],
        ...cpuRows.map((p) => [p.target, ...CPU_COLUMNS.map(([key]) => (p.cpuMsPerRequest?.[key] ?? 0).toFixed(2))]),
      ]),
    );
  }
  for (const p of [s.direct, s.gateway]) {
    const kinds = Object.entries(p.errorKinds);
    if (kinds.length > 0) lines.push(`  ${p.target} errors: ${kinds.map(([k, n]) => `${n}× ${k}`).join(", ")}`);
    if (p.deadlineHit) lines.push(`  ${p.target}: stopped at the time limit after ${p.requests} requests`);
  }
  const rec = s.gateway.recorded;
  if (rec) {
    const pair = (p: { p50: number; p99: number } | null) => (p ? `p50 ${p.p50.toFixed(0)} / p99 ${p.p99.toFixed(0)} ms` : "-");
    lines.push(
      `  gateway's usage rows: ${rec.rows}/${rec.expected}; inside the worker: first upstream byte ${pair(rec.firstByteMs)}, end ${pair(rec.latencyMs)}`,
    );
  }
  return lines.join("\n");
}

/** The human-readable report. */
export function formatReport(report: BenchReport): string {
  const { settings, machine } = report;
  return [
    `Switchyard gateway overhead: ${settings.requests} requests per run after ${settings.warmupRequests} warm-up, ${settings.concurrency} in flight`,
    `${report.generatedAt}, ${machine.os}, ${machine.cpus} × ${machine.cpuModel}, Node ${machine.node}`,
    "",
    ...report.scenarios.map((s) => `${scenarioText(s)}\n`),
    "added = gateway − direct. CPU: wrangler = the wrangler dev Node processes; wd proxy = the workerd that wrangler dev puts in",
    "front of the worker (not in production); wd worker = the workerd running the gateway; adapters = the rest of this process",
    "(the stack's Upstash-REST and Neon-WebSocket stand-ins, GC threads); postgres and redis are whole servers (other clients add noise).",
  ].join("\n");
}

/** Writes the report as JSON, creating the folder. */
export async function writeReport(report: BenchReport, path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, `${JSON.stringify(report, null, 2)}\n`);
}
