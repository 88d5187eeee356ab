import { readFileSync } from "node:fs";
import { z } from "zod";

/** The three recommendations a council vote gives. */
export const RECOMMENDATIONS = ["PROCEED", "PROCEED WITH CAUTION", "REVIEW REQUIRED"] as const;
/** A council's recommendation. */
export type Recommendation = (typeof RECOMMENDATIONS)[number];

const caseSchema = z.strictObject({
  name: z.string().regex(/^\S+$/, "must be a name without spaces"),
  question: z.string().min(1),
  expect_concerns: z.array(z.string().min(1)),
  expect_recommendation: z.enum(RECOMMENDATIONS),
  persona_checks: z
    .array(z.strictObject({ specialist: z.string().min(1), any_of: z.array(z.string().min(1)).min(1) }))
    .optional(),
});

/** A persona check: the specialist's answer mentions at least one of the words (case-insensitive). */
export interface PersonaCheck {
  specialist: string;
  any_of: string[];
}

/** One evaluation case (eval/council-cases.json; docs/eval.md). */
export interface EvalCase {
  name: string;
  question: string;
  /** The exact set of concern tags the vote must raise (order does not matter). */
  expect_concerns: string[];
  expect_recommendation: Recommendation;
  persona_checks?: PersonaCheck[];
}

/** A cases file that cannot be used; the message names the file and the case. */
export class CasesError extends Error {
  override name = "CasesError";
}

/** Validates a parsed cases file: a non-empty array of cases with unique names. */
export function parseCases(raw: unknown, source = "cases"): EvalCase[] {
  const parsed = z.array(caseSchema).min(1, "must list at least one case").safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? ` case ${issue.path.join(".")}` : "";
    throw new CasesError(`${source}:${where} ${issue?.message ?? "invalid"}`);
  }
  const seen = new Set<string>();
  for (const c of parsed.data) {
    if (seen.has(c.name)) throw new CasesError(`${source}: case name "${c.name}" appears twice`);
    seen.add(c.name);
  }
  return parsed.data;
}

/** Reads and validates a cases file. */
export function loadCases(file: string): EvalCase[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw new CasesError(`cannot read cases file ${file}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  return parseCases(raw, file);
}
