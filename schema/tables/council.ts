import { sql } from "drizzle-orm";
import { boolean, index, integer, jsonb, pgTable, text, timestamp, uniqueIndex } from "drizzle-orm/pg-core";
import { tenants } from "./tenancy.ts";

/** A specialist of a council, as stored (docs/council.md). */
export interface SpecialistRow {
  name: string;
  /** The persona: the system prompt of every question the specialist is asked. */
  persona: string;
  /** A catalogue model id (or alias). */
  model: string;
  /** Sampling settings sent with each question (temperature, top_p, max_tokens, seed; vLLM's min_tokens). */
  sampling: { temperature?: number; top_p?: number; max_tokens?: number; seed?: number; min_tokens?: number };
  /** The concern tags it may raise, e.g. "SECURITY CONCERN". */
  concern_tags: string[];
}

/**
 * A tenant's council (docs/council.md): a named set of specialists asked in parallel, one of them
 * the synthesiser that writes the consensus. The built-in `default` council lives in code; a
 * tenant's council named `default` overrides it for that tenant.
 */
export const councils = pgTable(
  "councils",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    specialists: jsonb("specialists").$type<SpecialistRow[]>().notNull(),
    /** The specialist (by name) that writes the consensus from every answer. */
    synthesiser: text("synthesiser").notNull(),
    /** How long every specialist has to answer. */
    deadlineMs: integer("deadline_ms").notNull().default(30_000),
    /** Concern tags that make a vote REVIEW REQUIRED on their own (others lower the confidence and call for caution). */
    criticalTags: text("critical_tags").array().notNull().default(sql`ARRAY['SECURITY CONCERN','7GEN CONCERN']::text[]`),
    /** Each vote leaves a breadcrumb on the tenant's memory trails (source `council:<name>`). */
    leaveBreadcrumbs: boolean("leave_breadcrumbs").notNull().default(false),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex("councils_tenant_name_idx").on(t.tenantId, t.name)],
);

/** One council vote, as answered (written off the request path; `id` is the vote id the usage rows name). */
export const councilVotes = pgTable(
  "council_votes",
  {
    id: text("id").primaryKey(),
    at: timestamp("at", { withTimezone: true }).notNull(),
    tenantId: text("tenant_id").notNull(),
    environmentId: text("environment_id").notNull(),
    apiKeyId: text("api_key_id").notNull(),
    council: text("council").notNull(),
    question: text("question").notNull(),
    /** name → answer text, for the specialists that answered. */
    responses: jsonb("responses").$type<Record<string, string>>().notNull(),
    /** name → why it did not answer (failed, timed out). */
    failures: jsonb("failures").$type<Record<string, string>>().notNull(),
    consensus: text("consensus"),
    concerns: jsonb("concerns").$type<{ tag: string; raised_by: string[] }[]>().notNull(),
    recommendation: text("recommendation", { enum: ["PROCEED", "PROCEED WITH CAUTION", "REVIEW REQUIRED"] }).notNull(),
    confidence: integer("confidence").notNull(),
    auditHash: text("audit_hash").notNull(),
    partial: boolean("partial").notNull(),
    usage: jsonb("usage").$type<{ prompt_tokens: number; completion_tokens: number; total_tokens: number; cost_micros: number }>().notNull(),
  },
  (t) => [index("council_votes_tenant_at_idx").on(t.tenantId, t.at)],
);
