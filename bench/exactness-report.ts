/** The exactness run (exactness.ts) as a section of the benchmark report. */
import type { ExactnessResult, ScenarioResult } from "./exactness.ts";

function table(rows: [string, string][]): string {
  return ["| measure | value |", "|---|---:|", ...rows.map(([k, v]) => `| ${k} | ${v} |`)].join("\n");
}

function amount(value: number, unit: ScenarioResult["unit"]): string {
  return unit === "micro-USD" ? `${value} µUSD` : `${value} requests`;
}

function allowedText(s: ScenarioResult): string {
  if (s.allowed === s.limit) return amount(s.allowed, s.unit);
  return `${amount(s.allowed, s.unit)} (${s.limit} + ${s.allowed - s.limit} refilled in ${(s.durationMs / 1000).toFixed(1)} s)`;
}

/** One table per scenario, under "## Exactness across isolates", with the run's verdict. */
export function formatExactness(r: ExactnessResult): string {
  const out: string[] = ["## Exactness across isolates", ""];
  out.push(
    `${r.workerds} workerd processes of one deployment (one database, one Redis prefix, an Upstash-REST adapter each), ${r.concurrency} concurrent clients spread round-robin over them, streamed and non-streamed chat completions in turn (max_tokens ${r.maxTokens}, real cost ${r.requestCostMicros} µUSD each). Each limit is on a fresh key and driven until every client has been refused; budgets then get rounds of one request per client, after settlements, until a round admits nothing. Not timed. Overshoot must be 0 and the used share at least 95 %.`,
    "",
  );
  for (const s of r.scenarios) {
    out.push(`### ${s.title}`, "");
    const rows: [string, string][] = [
      ["allowed", allowedText(s)],
      ["admitted", String(s.admitted)],
      ["refused", String(s.refused)],
      ["errors", String(s.errors)],
      ["used", amount(s.used, s.unit)],
      ["used share", `${(s.usedShare * 100).toFixed(1)} %`],
      ["overshoot", String(s.overshoot)],
      ["duration", `${(s.durationMs / 1000).toFixed(1)} s`],
      ["workerd processes that admitted", `${s.admittedBy.filter((n) => n > 0).length} of ${s.admittedBy.length} (${s.admittedBy.join(" / ")})`],
    ];
    if (s.counter !== null) rows.push(["budget counter in Redis", amount(s.counter, s.unit)]);
    if (s.retryRounds > 0) rows.push(["retry rounds", String(s.retryRounds)]);
    rows.push(["result", s.failures.length === 0 ? "pass" : `**fail**: ${s.failures.join("; ")}`]);
    out.push(table(rows), "");
  }
  out.push(r.passed ? "All limits held exactly." : `**Failed**: ${r.failures.join("; ")}`);
  return out.join("\n");
}
