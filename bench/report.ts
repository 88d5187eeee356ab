import { mkdir, writeFile } from "node:fs/promises";
import { cpus, release } from "node:os";
import { join } from "node:path";
import type { BenchArgs } from "./args.ts";
import { MODES, OUTPUT_TOKENS, type CompareResult, type Mode } from "./compare.ts";
import type { RoutingResult } from "./routing.ts";

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
  routing: RoutingResult | null;
  targets: TargetCheck[];
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

const f = (n: number | undefined, digits = 2) => (n === undefined || Number.isNaN(n) ? "-" : n.toFixed(digits));

/** The issue's targets, evaluated on this run's numbers (null: not measured in this run). */
export function checkTargets(compare: CompareResult, routing: RoutingResult | null): TargetCheck[] {
  const lat = compare.latency;
  const added = (mode: Mode, edge: "firstByte" | "lastByte", p: "p50" | "p99") => {
    const sy = lat[mode]?.switchyard?.[edge][p];
    const engine = lat[mode]?.engine?.[edge][p];
    return sy === undefined || engine === undefined ? undefined : sy - engine;
  };
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
  const rr = routing?.unequal.find((r) => r.strategy === "round-robin")?.ttftP90Ms;
  const ll = routing?.unequal.find((r) => r.strategy === "least-load")?.ttftP90Ms;
  checks.push({
    goal: "routing: least-load p90 TTFT ≥ 5 × better than round-robin (unequal queues)",
    measured: rr === undefined || ll === undefined ? "not measured" : `${f(rr / ll, 1)} × (${f(rr, 0)} vs ${f(ll, 0)} ms)`,
    met: rr === undefined || ll === undefined ? null : rr / ll >= 5,
  });
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
  out.push("## Correctness", "", mdTable(["target", ...MODES], names.map((n) => [n, ...MODES.map((m) => r.compare.correctness[m]?.[n] ?? "-")])), "");
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
