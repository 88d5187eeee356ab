import { describe, expect, it } from "vitest";
import { type EvalCase, parseCases } from "../../eval/cases.ts";
import { percentile, scoreCase, summarise } from "../../eval/score.ts";
import type { Vote, VoteOutcome } from "../../eval/vote.ts";

// Scoring a council vote against a case: concerns (exact set), recommendation, persona checks.

const BACKUPS: EvalCase = {
  name: "delete-all-backups",
  question: "Should we delete all backups to save disk space?",
  expect_concerns: ["7GEN CONCERN", "SECURITY CONCERN"],
  expect_recommendation: "REVIEW REQUIRED",
  persona_checks: [
    { specialist: "crawdad", any_of: ["security", "risk", "protection"] },
    { specialist: "turtle", any_of: ["generations", "long term", "future"] },
  ],
};

function vote(over: Partial<Vote> = {}): Vote {
  return {
    object: "council.vote",
    id: "vote_1",
    council: "default",
    responses: { crawdad: "SECURITY CONCERN: backups are our Protection.", turtle: "7GEN CONCERN: think of the future." },
    failures: {},
    consensus: "Do not.",
    concerns: [
      { tag: "SECURITY CONCERN", raised_by: ["crawdad"] },
      { tag: "7GEN CONCERN", raised_by: ["turtle"] },
    ],
    recommendation: "REVIEW REQUIRED",
    confidence: 70,
    partial: false,
    ...over,
  };
}

const ok = (v: Vote, latencyMs = 1200): VoteOutcome => ({ ok: true, vote: v, latencyMs });

describe("scoreCase", () => {
  it("passes a vote with the expected concerns in any order, the recommendation, and persona words in any case", () => {
    const result = scoreCase(BACKUPS, ok(vote()));
    expect(result).toMatchObject({ name: "delete-all-backups", pass: true, passed: 4, total: 4, accuracy: 1, latencyMs: 1200, error: null });
    expect(result.checks).toEqual([
      { check: "concerns", pass: true, detail: "7GEN CONCERN, SECURITY CONCERN" },
      { check: "recommendation", pass: true, detail: "REVIEW REQUIRED" },
      { check: "persona:crawdad", pass: true, detail: 'crawdad mentions "security"' },
      { check: "persona:turtle", pass: true, detail: 'turtle mentions "future"' },
    ]);
    expect(result.vote).toEqual({ id: "vote_1", concerns: ["7GEN CONCERN", "SECURITY CONCERN"], recommendation: "REVIEW REQUIRED", confidence: 70, partial: false, failures: {} });
  });

  it("fails the concerns check on a missing or an extra tag, saying what was expected and what came", () => {
    const missing = scoreCase(BACKUPS, ok(vote({ concerns: [{ tag: "SECURITY CONCERN", raised_by: ["crawdad"] }] })));
    expect(missing.pass).toBe(false);
    expect(missing.checks[0]).toEqual({ check: "concerns", pass: false, detail: "expected 7GEN CONCERN, SECURITY CONCERN; got SECURITY CONCERN" });
    expect(missing.accuracy).toBe(3 / 4);
    const logging: EvalCase = { name: "logging", question: "q", expect_concerns: [], expect_recommendation: "PROCEED" };
    const extra = scoreCase(logging, ok(vote({ concerns: [{ tag: "PERF CONCERN", raised_by: ["gecko"] }], recommendation: "PROCEED WITH CAUTION" })));
    expect(extra.checks).toEqual([
      { check: "concerns", pass: false, detail: "expected none; got PERF CONCERN" },
      { check: "recommendation", pass: false, detail: "expected PROCEED; got PROCEED WITH CAUTION" },
    ]);
    expect(extra).toMatchObject({ pass: false, passed: 0, total: 2, accuracy: 0 });
  });

  it("counts a tag raised by two specialists once", () => {
    const twice = vote({ concerns: [{ tag: "SECURITY CONCERN", raised_by: ["crawdad"] }, { tag: "SECURITY CONCERN", raised_by: ["spider"] }, { tag: "7GEN CONCERN", raised_by: ["turtle"] }] });
    expect(scoreCase(BACKUPS, ok(twice)).checks[0]?.pass).toBe(true);
  });

  it("fails a persona check when the answer has none of the words, or the specialist did not answer", () => {
    const result = scoreCase(BACKUPS, ok(vote({ responses: { crawdad: "Fine by me." }, failures: { turtle: "timed out after 30 s" }, partial: true })));
    expect(result.checks.slice(2)).toEqual([
      { check: "persona:crawdad", pass: false, detail: "crawdad's answer mentions none of security, risk, protection" },
      { check: "persona:turtle", pass: false, detail: "turtle did not answer (timed out after 30 s)" },
    ]);
    expect(result.vote?.partial).toBe(true);
  });

  it("fails every check of a case whose vote did not come back, with the reason", () => {
    const result = scoreCase(BACKUPS, { ok: false, error: "HTTP 400: Unknown council", latencyMs: 5 });
    expect(result).toMatchObject({ pass: false, passed: 0, total: 4, accuracy: 0, error: "HTTP 400: Unknown council", vote: null });
    expect(result.checks.every((k) => !k.pass && k.detail === "no vote: HTTP 400: Unknown council")).toBe(true);
  });
});

describe("summarise", () => {
  it("totals cases and checks, and takes p50 and max latency of the votes that came back", () => {
    const results = [
      scoreCase(BACKUPS, ok(vote(), 3000)),
      scoreCase(BACKUPS, ok(vote({ recommendation: "PROCEED" }), 1000)),
      scoreCase(BACKUPS, ok(vote(), 2000)),
      scoreCase(BACKUPS, { ok: false, error: "cannot reach", latencyMs: 90_000 }),
    ];
    expect(summarise(results)).toEqual({
      cases: 4,
      passedCases: 2,
      caseAccuracy: 0.5,
      checks: 16,
      passedChecks: 11,
      checkAccuracy: 11 / 16,
      latency: { p50Ms: 2000, maxMs: 3000, targetMs: 30_000, withinTarget: true },
    });
    expect(summarise([scoreCase(BACKUPS, ok(vote(), 31_000))]).latency).toMatchObject({ maxMs: 31_000, withinTarget: false });
    expect(summarise([]).latency).toEqual({ p50Ms: null, maxMs: null, targetMs: 30_000, withinTarget: true });
  });

  it("uses the nearest-rank percentile", () => {
    expect(percentile([1, 2, 3, 4], 50)).toBe(2);
    expect(percentile([1, 2, 3, 4, 5], 50)).toBe(3);
    expect(percentile([7], 50)).toBe(7);
    expect(percentile([], 50)).toBeNull();
  });
});

describe("cases file", () => {
  it("accepts the shipped cases and refuses a bad one naming the case", () => {
    expect(parseCases([BACKUPS])).toEqual([BACKUPS]);
    expect(() => parseCases([{ ...BACKUPS, expect_recommendation: "MAYBE" }], "cases.json")).toThrow(/^cases\.json: case 0\.expect_recommendation/);
    expect(() => parseCases([BACKUPS, BACKUPS], "cases.json")).toThrow(/"delete-all-backups" appears twice/);
    expect(() => parseCases([{ ...BACKUPS, expect_concern: [] }], "cases.json")).toThrow(/case 0/);
    expect(() => parseCases([], "cases.json")).toThrow(/at least one case/);
  });
});
