import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { builtinCouncil } from "../../worker/src/council/builtin.ts";
import { auditHash, auditText, concernsOf, confidenceOf, consensusFromPayloads, recommendationOf, synthesisPrompt } from "../../worker/src/council/outcome.ts";

const council = builtinCouncil("m");

describe("a vote's outcome", () => {
  it("raises a tag only when a specialist's answer contains its own tag, grouping who raised it", () => {
    const concerns = concernsOf(council, {
      crawdad: "SECURITY CONCERN: plain text passwords.",
      turtle: "7GEN CONCERN for the future. Also a SECURITY CONCERN.", // not turtle's tag: ignored
      gecko: "security concern in lower case does not count",
      raven: "STRATEGY CONCERN and STRATEGY CONCERN again",
    });
    expect(concerns).toEqual([
      { tag: "SECURITY CONCERN", raised_by: ["crawdad"] },
      { tag: "7GEN CONCERN", raised_by: ["turtle"] },
      { tag: "STRATEGY CONCERN", raised_by: ["raven"] },
    ]);
  });

  it("loses 15 confidence per concern, never below 0", () => {
    const tags = (n: number) => Array.from({ length: n }, (_, i) => ({ tag: `T${i}`, raised_by: ["x"] }));
    expect([0, 1, 2, 6, 7, 10].map((n) => confidenceOf(tags(n)))).toEqual([100, 85, 70, 10, 0, 0]);
  });

  it("recommends from the concerns: none proceeds, a critical one or three need review, others call for caution", () => {
    const c = (...tags: string[]) => tags.map((tag) => ({ tag, raised_by: ["x"] }));
    expect(recommendationOf(council, [])).toBe("PROCEED");
    expect(recommendationOf(council, c("PERF CONCERN"))).toBe("PROCEED WITH CAUTION");
    expect(recommendationOf(council, c("PERF CONCERN", "VISIBILITY CONCERN"))).toBe("PROCEED WITH CAUTION");
    expect(recommendationOf(council, c("SECURITY CONCERN"))).toBe("REVIEW REQUIRED");
    expect(recommendationOf(council, c("7GEN CONCERN"))).toBe("REVIEW REQUIRED");
    expect(recommendationOf(council, c("PERF CONCERN", "VISIBILITY CONCERN", "STRATEGY CONCERN"))).toBe("REVIEW REQUIRED");
  });

  it("hashes the question and the responses in a canonical form anyone can recompute (names sorted, no whitespace)", async () => {
    const responses = { raven: "r", crawdad: "c" };
    const text = auditText("Q?", responses);
    expect(text).toBe('{"question":"Q?","responses":{"crawdad":"c","raven":"r"}}');
    expect(await auditHash("Q?", responses)).toBe(createHash("sha256").update(text).digest("hex"));
    expect(await auditHash("Q?", { crawdad: "c", raven: "r" })).toBe(await auditHash("Q?", responses));
    expect(await auditHash("Q!", responses)).not.toBe(await auditHash("Q?", responses));
  });

  it("gives the synthesiser every answer by name, and reads a streamed consensus back from its chunks", () => {
    expect(synthesisPrompt("Q", { crawdad: "a", turtle: "b" })).toBe("Question: Q\n\nThe specialists' answers:\n\n## crawdad\na\n\n## turtle\nb");
    const payloads = ['{"choices":[{"delta":{"role":"assistant","content":""}}]}', '{"choices":[{"delta":{"content":"Agreed"}}]}', '{"choices":[{"delta":{"content":"."}}]}', '{"choices":[],"usage":{}}', "[DONE]"].join("\n");
    expect(consensusFromPayloads(payloads)).toBe("Agreed.");
  });

  it("ships the seven built-in specialists with their tags, Peace Chief writing the consensus", () => {
    expect(council.specialists.map((s) => [s.name, s.concern_tags])).toEqual([
      ["crawdad", ["SECURITY CONCERN"]],
      ["gecko", ["PERF CONCERN"]],
      ["turtle", ["7GEN CONCERN"]],
      ["eagle_eye", ["VISIBILITY CONCERN"]],
      ["spider", ["INTEGRATION CONCERN"]],
      ["peace_chief", ["CONSENSUS CONCERN"]],
      ["raven", ["STRATEGY CONCERN"]],
    ]);
    expect(council.synthesiser).toBe("peace_chief");
    expect(council.deadlineMs).toBe(30_000);
  });
});
