import { describe, expect, it } from "vitest";
import { compareRuns } from "../../eval/compare.ts";

// Regressions against the last saved run: passed then, fails now.

const run = (cases: [string, boolean][], council = "default", startedAt = "2026-12-07T10:00:00.000Z") => ({
  council,
  startedAt,
  cases: cases.map(([name, pass]) => ({ name, pass })),
});

describe("compareRuns", () => {
  it("lists a case that passed in the saved run and fails now as a regression, and one that failed and passes as fixed", () => {
    const saved = run([["passwords", true], ["logging", false], ["backups", true]]);
    const now = run([["passwords", true], ["logging", true], ["backups", false], ["new-case", false]], "default", "2026-12-07T11:00:00.000Z");
    expect(compareRuns(saved, now)).toEqual({ baseline: "2026-12-07T10:00:00.000Z", note: null, regressions: ["backups"], fixed: ["logging"], added: ["new-case"] });
  });

  it("does not count a case that failed both times, or one dropped since, as a regression", () => {
    expect(compareRuns(run([["a", false], ["gone", true]]), run([["a", false]])).regressions).toEqual([]);
  });

  it("compares nothing without a saved run, or with a saved run of another council, and says why", () => {
    expect(compareRuns(null, run([["a", false]]))).toEqual({ baseline: null, note: "no saved run to compare with (run with --save to keep one)", regressions: [], fixed: [], added: [] });
    const other = compareRuns(run([["a", true]], "security-review"), run([["a", false]]));
    expect(other.regressions).toEqual([]);
    expect(other.note).toBe('the saved run (2026-12-07T10:00:00.000Z) is of council "security-review", not compared');
  });
});
