import type { SpecialistRow } from "../../../schema/tables/council.ts";

/** A council as the admin API shows it (the CLI and tests read this shape). */
export interface CouncilJson {
  object: "council";
  tenant_id: string;
  name: string;
  /** The code's built-in default council (not stored: PUT /admin/councils/{tenant}/default stores the tenant's own). */
  builtin: boolean;
  /** Its name as a chat model. */
  model: string;
  specialists: SpecialistRow[];
  synthesiser: string;
  deadline_ms: number;
  critical_tags: string[];
  leave_breadcrumbs: boolean;
  updated_at: string | null;
}
