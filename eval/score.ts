import type { EvalCase } from "./cases.ts";
import type { VoteOutcome } from "./vote.ts";

/**
 * Scoring, as pure functions: a case's checks are the concerns (the exact set of tags), the
 * recommendation, and each persona check. A case passes when every check passes; its accuracy is
 * the share of its checks that pass. A vote that did not come back fails every check.
 */

/** One check of a case. */
export interface CheckResult {
  /** "concerns", "recommendation" or "persona:<specialist>". */
  check: string;
  pass: boolean;
  /** What was seen (and, on a failure, what was expected). */
  detail: string;
}

/** The vote as the results file keeps it (answers left out: the vote id finds them). */
export interface VoteSummary {
  id: string;
  concerns: string[];
  recommendation: string;
  confidence: number;
  partial: boolean;
  failures: Record<string, string>;
}

/** One case's outcome. */
export interface CaseResult {
  name: string;
  question: string;
  pass: boolean;
  checks: CheckResult[];
  passed: number;
  total: number;
  /** passed / total. */
  accuracy: number;
  latencyMs: number;
  /** Why there is no vote (HTTP error, timeout, bad body); null when the vote came back. */
  error: string | null;
  vote: VoteSummary | null;
}

/** The vote's latency against the target (30 s for all seven specialists on real GPUs). */
export interface LatencySummary {
  /** Nearest-rank median of the votes that came back; null when none did. */
  p50Ms: number | null;
  maxMs: number | null;
  targetMs: number;
  /** Every vote that came back did so within the target (true when none came back). */
  withinTarget: boolean;
}

/** The run's totals. */
export interface RunSummary {
  cases: number;
  passedCases: number;
  /** passedCases / cases. */
  caseAccuracy: number;
  checks: number;
  passedChecks: number;
  /** passedChecks / checks. */
  checkAccuracy: number;
  latency: LatencySummary;
}

/** The latency target of a vote: all seven specialists in parallel, on real GPUs (issue 15). */
export const LATENCY_TARGET_MS = 30_000;

const list = (tags: readonly string[]) => (tags.length === 0 ? "none" : tags.join(", "));

function checksNames(c: EvalCase): string[] {
  return ["concerns", "recommendation", ...(c.persona_checks ?? []).map((p) => `persona:${p.specialist}`)];
}

/** Scores one case against what asking for its vote gave. */
export function scoreCase(c: EvalCase, outcome: VoteOutcome): CaseResult {
  const base = { name: c.name, question: c.question, latencyMs: outcome.latencyMs };
  if (!outcome.ok) {
    const checks = checksNames(c).map((check) => ({ check, pass: false, detail: `no vote: ${outcome.error}` }));
    return { ...base, pass: false, checks, passed: 0, total: checks.length, accuracy: 0, error: outcome.error, vote: null };
  }
  const { vote } = outcome;
  const raised = [...new Set(vote.concerns.map((k) => k.tag))].sort();
  const expected = [...new Set(c.expect_concerns)].sort();
  const checks: CheckResult[] = [];
  const sameConcerns = raised.length === expected.length && raised.every((tag, i) => tag === expected[i]);
  checks.push({ check: "concerns", pass: sameConcerns, detail: sameConcerns ? list(raised) : `expected ${list(expected)}; got ${list(raised)}` });
  const sameRecommendation = vote.recommendation === c.expect_recommendation;
  checks.push({
    check: "recommendation",
    pass: sameRecommendation,
    detail: sameRecommendation ? vote.recommendation : `expected ${c.expect_recommendation}; got ${vote.recommendation}`,
  });
  for (const p of c.persona_checks ?? []) {
    const answer = vote.responses[p.specialist];
    const check = `persona:${p.specialist}`;
    if (answer === undefined) {
      const failure = vote.failures[p.specialist];
      checks.push({ check, pass: false, detail: `${p.specialist} did not answer${failure === undefined ? "" : ` (${failure})`}` });
      continue;
    }
    const lower = answer.toLowerCase();
    const found = p.any_of.find((word) => lower.includes(word.toLowerCase()));
    checks.push({
      check,
      pass: found !== undefined,
      detail: found !== undefined ? `${p.specialist} mentions "${found}"` : `${p.specialist}'s answer mentions none of ${p.any_of.join(", ")}`,
    });
  }
  const passed = checks.filter((k) => k.pass).length;
  return {
    ...base,
    pass: passed === checks.length,
    checks,
    passed,
    total: checks.length,
    accuracy: passed / checks.length,
    error: null,
    vote: { id: vote.id, concerns: raised, recommendation: vote.recommendation, confidence: vote.confidence, partial: vote.partial, failures: vote.failures },
  };
}

/** Nearest-rank percentile of an ascending array; null for an empty one. */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1] ?? null;
}

/** Totals of a run; latency counts only the votes that came back. */
export function summarise(results: readonly CaseResult[], targetMs = LATENCY_TARGET_MS): RunSummary {
  const passedCases = results.filter((r) => r.pass).length;
  const checks = results.reduce((sum, r) => sum + r.total, 0);
  const passedChecks = results.reduce((sum, r) => sum + r.passed, 0);
  const latencies = results.filter((r) => r.vote !== null).map((r) => r.latencyMs).sort((a, b) => a - b);
  const maxMs = latencies.at(-1) ?? null;
  return {
    cases: results.length,
    passedCases,
    caseAccuracy: results.length === 0 ? 0 : passedCases / results.length,
    checks,
    passedChecks,
    checkAccuracy: checks === 0 ? 0 : passedChecks / checks,
    latency: { p50Ms: percentile(latencies, 50), maxMs, targetMs, withinTarget: maxMs === null || maxMs <= targetMs },
  };
}
