/**
 * The council fixture (eval/council-script.json) on the simulated engine: a loopback council that
 * asks the simulator as the real one does (each specialist's persona as the system message, the
 * question as the user message; the synthesiser with "Write the council's consensus") gets the
 * shipped cases' expected concerns, recommendations and persona words, so runEval passes them all.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { parseSimArgs } from "../../backplane/src/sim/index.ts";
import { loadCases } from "../../eval/cases.ts";
import { runEval } from "../../eval/harness.ts";
import { castVote } from "../../eval/vote.ts";
import { type FakeCouncil, startFakeCouncil } from "../support/fake-council.ts";
import { simClient, useSimEngine } from "../support/sim-harness.ts";

const SCRIPT = fileURLToPath(new URL("../../eval/council-script.json", import.meta.url));
const CASES = fileURLToPath(new URL("../../eval/council-cases.json", import.meta.url));
const KEY = "sk-fixture";

const start = useSimEngine();
let council: FakeCouncil | null = null;
afterEach(async () => {
  await council?.close();
  council = null;
});
const dir = mkdtempSync(join(tmpdir(), "switchyard-eval-fixture-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The simulator with the fixture, loaded as `--script` loads it, and a council in front of it. */
async function councilOnSim(): Promise<FakeCouncil> {
  const sim = await start({ script: parseSimArgs(["--script", SCRIPT], {}).script });
  const client = simClient(sim);
  council = await startFakeCouncil({
    key: KEY,
    ask: async (system, user) => {
      const completion = await client.chat.completions.create({
        model: "sim-llama-8b",
        messages: [
          { role: "system", content: system },
          { role: "user", content: user },
        ],
        temperature: 0.2,
        max_tokens: 256,
      });
      return completion.choices[0]?.message.content ?? "";
    },
  });
  return council;
}

describe("the council fixture on the simulator", () => {
  it("passes every shipped case through runEval", async () => {
    const { url } = await councilOnSim();
    const report = await runEval({ url, key: KEY, council: "default", cases: loadCases(CASES), resultsDir: dir, save: false });
    const failed = report.cases.flatMap((c) => c.checks.filter((k) => !k.pass).map((k) => `${c.name} ${k.check}: ${k.detail}`));
    expect(failed).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.cases.map((c) => [c.name, c.vote?.concerns, c.vote?.recommendation])).toEqual([
      ["plain-text-passwords", ["SECURITY CONCERN"], "REVIEW REQUIRED"],
      ["api-usage-logging", [], "PROCEED"],
      ["delete-all-backups", ["7GEN CONCERN", "SECURITY CONCERN"], "REVIEW REQUIRED"],
    ]);
    expect(report.summary.latency.withinTarget).toBe(true);
  });

  it("raises each tag from the expected specialist, and the synthesiser's scripted consensus wins over Peace Chief's own answer", async () => {
    const { url } = await councilOnSim();
    const outcome = await castVote({ url, key: KEY, council: "default", timeoutMs: 10_000 }, "Should we delete all backups to save disk space?");
    if (!outcome.ok) throw new Error(outcome.error);
    expect(outcome.vote.concerns).toEqual([
      { tag: "SECURITY CONCERN", raised_by: ["crawdad"] },
      { tag: "7GEN CONCERN", raised_by: ["turtle"] },
    ]);
    expect(outcome.vote.consensus).toMatch(/^The council advises against deleting all backups/);
    expect(outcome.vote.responses.peace_chief).toMatch(/^Operations and compliance/);
    expect(Object.keys(outcome.vote.responses).sort()).toEqual(["crawdad", "eagle_eye", "gecko", "peace_chief", "raven", "spider", "turtle"]);
  });

  it("answers any other question in persona without raising a tag", async () => {
    const { url } = await councilOnSim();
    const outcome = await castVote({ url, key: KEY, council: "default", timeoutMs: 10_000 }, "Should we rename the staging cluster?");
    if (!outcome.ok) throw new Error(outcome.error);
    expect(outcome.vote).toMatchObject({ concerns: [], recommendation: "PROCEED" });
    expect(outcome.vote.responses.crawdad).toMatch(/security risk/);
    expect(outcome.vote.responses.turtle).toMatch(/long term/);
  });
});
