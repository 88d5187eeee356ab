import type { SpecialistRow } from "../../../schema/tables/council.ts";
import type { Concern, Recommendation } from "./types.ts";

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

/** A finished vote, as the API answers it. */
export interface VoteAnswer {
  object: "council.vote";
  id: string;
  council: string;
  question: string;
  responses: Record<string, string>;
  failures: Record<string, string>;
  consensus: string | null;
  concerns: Concern[];
  recommendation: Recommendation;
  confidence: number;
  partial: boolean;
  audit_hash: string;
  timestamp: string;
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}

/** A stored vote as the API shows it: the vote's answer, with its cost, and who asked. */
export interface StoredVoteJson extends Omit<VoteAnswer, "usage"> {
  usage: VoteAnswer["usage"] & { cost_usd: number };
  tenant_id: string;
  environment_id: string;
  key_id: string;
}
