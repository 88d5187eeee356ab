import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { EvalCase } from "./cases.ts";
import { type ComparableRun, type Comparison, compareRuns } from "./compare.ts";
import { type CaseResult, LATENCY_TARGET_MS, type RunSummary, scoreCase, summarise } from "./score.ts";
import { castVote } from "./vote.ts";

/** What runEval needs: the gateway, the council, the cases, and where saved runs live. */
export interface EvalOptions {
  /** The gateway's base URL (without /v1). */
  url: string;
  /** An API key allowed to use the council. */
  key: string;
  council: string;
  cases: readonly EvalCase[];
  /** Folder of the saved runs (`<time>.json` and `latest.json`); the baseline is its latest.json. */
  resultsDir: string;
  /** Write this run as `<time>.json` and as the new `latest.json`. */
  save: boolean;
  /** Give up on one vote after this long (default 60 s: the council's 30 s deadline and the way there). */
  timeoutMs?: number;
  /** The latency target a vote is held to (default 30 s). */
  targetMs?: number;
  /** Progress lines (one per case as it finishes). */
  log?: (line: string) => void;
}

/** A run: every case's result, the totals, the comparison with the saved run. Also the results file's content. */
export interface EvalReport {
  council: string;
  url: string;
  startedAt: string;
  finishedAt: string;
  /** Cases run one after another, so one vote's latency is not another's queue. */
  order: "sequential";
  cases: CaseResult[];
  summary: RunSummary;
  comparison: Comparison;
  /** Every case passed and none regressed. */
  ok: boolean;
  /** Files written (with save). */
  savedTo: string[];
}

const DEFAULT_TIMEOUT_MS = 60_000;
const LATEST = "latest.json";

/** The saved run in `dir/latest.json`, or null when there is none (or it cannot be read). */
export function readSavedRun(dir: string): ComparableRun | null {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(join(dir, LATEST), "utf8"));
  } catch {
    return null;
  }
  if (raw === null || typeof raw !== "object") return null;
  const { council, startedAt, cases } = raw as Record<string, unknown>;
  if (typeof council !== "string" || typeof startedAt !== "string" || !Array.isArray(cases)) return null;
  const named = cases.filter((c): c is { name: string; pass: boolean } => c !== null && typeof c === "object" && typeof (c as { name?: unknown }).name === "string" && typeof (c as { pass?: unknown }).pass === "boolean");
  return { council, startedAt, cases: named };
}

/** Writes the report as `<dir>/<time>.json` and `<dir>/latest.json` (replaced atomically); returns both paths. */
export function saveRun(dir: string, report: EvalReport): string[] {
  mkdirSync(dir, { recursive: true });
  const stamped = join(dir, `${report.startedAt.replace(/[:.]/g, "-")}.json`);
  const latest = join(dir, LATEST);
  const text = `${JSON.stringify({ ...report, savedTo: [stamped, latest] }, null, 2)}\n`;
  writeFileSync(stamped, text);
  writeFileSync(`${latest}.tmp`, text);
  renameSync(`${latest}.tmp`, latest);
  return [stamped, latest];
}

/**
 * Runs every case through POST /v1/council/vote, one after another, scores them, compares with the
 * saved run (before saving this one) and, with `save`, saves this run. Never throws for a vote that
 * fails: that case fails.
 */
export async function runEval(opts: EvalOptions): Promise<EvalReport> {
  const target = { url: opts.url, key: opts.key, council: opts.council, timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS };
  const startedAt = new Date().toISOString();
  const cases: CaseResult[] = [];
  for (const c of opts.cases) {
    const result = scoreCase(c, await castVote(target, c.question));
    cases.push(result);
    opts.log?.(`${result.pass ? "pass" : "FAIL"} ${c.name} (${(result.latencyMs / 1000).toFixed(2)} s)${result.error ? `: ${result.error}` : ""}`);
  }
  const summary = summarise(cases, opts.targetMs ?? LATENCY_TARGET_MS);
  const comparison = compareRuns(readSavedRun(opts.resultsDir), { council: opts.council, startedAt, cases });
  const report: EvalReport = {
    council: opts.council,
    url: opts.url,
    startedAt,
    finishedAt: new Date().toISOString(),
    order: "sequential",
    cases,
    summary,
    comparison,
    ok: summary.passedCases === summary.cases && comparison.regressions.length === 0,
    savedTo: [],
  };
  if (opts.save) report.savedTo = saveRun(opts.resultsDir, report);
  return report;
}
