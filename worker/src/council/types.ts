import type { SpecialistRow } from "../../../schema/tables/council.ts";

/** A specialist of a council (schema/tables/council.ts). */
export type Specialist = SpecialistRow;

/** A council as a vote needs it. */
export interface Council {
  name: string;
  specialists: Specialist[];
  /** The specialist that writes the consensus. */
  synthesiser: string;
  deadlineMs: number;
  /** Tags that make a vote REVIEW REQUIRED on their own. */
  criticalTags: string[];
  leaveBreadcrumbs: boolean;
  /** True for the code's own default council (not a tenant's row). */
  builtin: boolean;
}

/** The three recommendations, from the concerns raised. */
export type Recommendation = "PROCEED" | "PROCEED WITH CAUTION" | "REVIEW REQUIRED";

/** A tag raised, and by whom. */
export interface Concern {
  tag: string;
  raised_by: string[];
}
