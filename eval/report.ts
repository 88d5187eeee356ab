import type { EvalReport } from "./harness.ts";

/** Seconds with two decimals, or "-". */
function seconds(ms: number | null): string {
  return ms === null ? "-" : `${(ms / 1000).toFixed(2)} s`;
}

function percent(fraction: number): string {
  return `${Math.round(fraction * 100)} %`;
}

function table(rows: string[][]): string[] {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length))) ?? [];
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join("  ").trimEnd());
}

/** The run as the CLI prints it: a table of cases, what failed, totals, latency, regressions. */
export function formatReport(report: EvalReport): string {
  const lines = [`Council "${report.council}" at ${report.url}: ${report.cases.length} cases, one after another`, ""];
  const rows = [["case", "result", "checks", "accuracy", "concerns", "recommendation", "latency"]];
  for (const c of report.cases) {
    rows.push([
      c.name,
      c.pass ? "pass" : "FAIL",
      `${c.passed}/${c.total}`,
      percent(c.accuracy),
      c.vote ? (c.vote.concerns.join(", ") || "none") : "-",
      c.vote?.recommendation ?? "-",
      c.vote ? `${seconds(c.latencyMs)}${c.vote.partial ? " (partial)" : ""}` : "-",
    ]);
  }
  lines.push(...table(rows));
  const failed = report.cases.flatMap((c) => (c.error !== null ? [`  ${c.name}: ${c.error}`] : c.checks.filter((k) => !k.pass).map((k) => `  ${c.name} ${k.check}: ${k.detail}`)));
  if (failed.length > 0) lines.push("", "Failed checks:", ...failed);
  const { summary: s, comparison: cmp } = report;
  lines.push(
    "",
    `Overall: ${s.passedCases}/${s.cases} cases passed (${percent(s.caseAccuracy)}), ${s.passedChecks}/${s.checks} checks (${percent(s.checkAccuracy)})`,
    `Latency per vote: p50 ${seconds(s.latency.p50Ms)}, max ${seconds(s.latency.maxMs)}; target under ${seconds(s.latency.targetMs)} on real GPUs: ${s.latency.maxMs === null ? "no vote came back" : s.latency.withinTarget ? "met" : "MISSED"}`,
  );
  if (cmp.baseline === null) lines.push(`Regressions: ${cmp.note ?? "not compared"}`);
  else {
    lines.push(`Against the saved run of ${cmp.baseline}: ${cmp.regressions.length === 0 ? "no regression" : `${cmp.regressions.length} REGRESSION(S): ${cmp.regressions.join(", ")}`}`);
    if (cmp.fixed.length > 0) lines.push(`  fixed since: ${cmp.fixed.join(", ")}`);
    if (cmp.added.length > 0) lines.push(`  new cases: ${cmp.added.join(", ")}`);
  }
  if (report.savedTo.length > 0) lines.push(`Saved: ${report.savedTo.join(", ")}`);
  return `${lines.join("\n")}\n`;
}
