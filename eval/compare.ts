/**
 * Regressions against the last saved run, as a pure function: a case (matched by name) that
 * passed in the saved run and fails now is a regression. Runs of another council are not compared.
 */

/** What comparison needs of a run (a saved results file or the current report). */
export interface ComparableRun {
  council: string;
  startedAt: string;
  cases: readonly { name: string; pass: boolean }[];
}

/** The comparison with the saved run. */
export interface Comparison {
  /** The saved run compared with (its start time), or null when there was none to compare. */
  baseline: string | null;
  /** Why there was no comparison (no saved run, another council). */
  note: string | null;
  /** Passed then, fail now. */
  regressions: string[];
  /** Failed then, pass now. */
  fixed: string[];
  /** Not in the saved run. */
  added: string[];
}

/** Compares the current run with the saved one (null: none saved). */
export function compareRuns(saved: ComparableRun | null, current: ComparableRun): Comparison {
  const none = { regressions: [], fixed: [], added: [] };
  if (saved === null) return { baseline: null, note: "no saved run to compare with (run with --save to keep one)", ...none };
  if (saved.council !== current.council) {
    return { baseline: null, note: `the saved run (${saved.startedAt}) is of council "${saved.council}", not compared`, ...none };
  }
  const before = new Map(saved.cases.map((c) => [c.name, c.pass]));
  const regressions: string[] = [];
  const fixed: string[] = [];
  const added: string[] = [];
  for (const c of current.cases) {
    const then = before.get(c.name);
    if (then === undefined) added.push(c.name);
    else if (then && !c.pass) regressions.push(c.name);
    else if (!then && c.pass) fixed.push(c.name);
  }
  return { baseline: saved.startedAt, note: null, regressions, fixed, added };
}
