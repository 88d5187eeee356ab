/** Usage records written as the usage flush writes them (records and hourly rollups together), for the statistics and overview tests. */
import { writeUsageBatch } from "../../worker/src/metering/flush.ts";
import type { UsageRow } from "../../worker/src/metering/record.ts";
import type { Sandbox } from "./admin-helpers.ts";
import { query } from "./helpers.ts";

/** What a seeded record differs in; the rest is an ordinary completed chat request. */
export interface Seed {
  at: Date;
  status?: UsageRow["status"];
  httpStatus?: number;
  streamed?: boolean;
  ttftMs?: number | null;
  latencyMs?: number;
  promptTokens?: number;
  completionTokens?: number;
  costMicros?: number;
  model?: string;
  apiKeyId?: string;
}

/** Writes `seeds` as usage records of `tenant` (its chat key unless told) through the flush's batch writer. */
export async function seedUsage(tenant: Sandbox, seeds: Seed[]): Promise<void> {
  const rows = seeds.map((s) => ({
    id: `req_${crypto.randomUUID()}`,
    at: s.at.toISOString(),
    tenantId: tenant.tenantId,
    environmentId: tenant.environmentId,
    apiKeyId: s.apiKeyId ?? tenant.keyId,
    endpoint: "chat" as const,
    model: s.model ?? "sim-llama-8b",
    regionId: null,
    nodeId: null,
    status: s.status ?? "ok",
    httpStatus: s.httpStatus ?? 200,
    streamed: s.streamed ?? false,
    promptTokens: s.promptTokens ?? 0,
    completionTokens: s.completionTokens ?? 0,
    cachedPromptTokens: 0,
    ttftMs: s.ttftMs ?? null,
    latencyMs: s.latencyMs ?? 10,
    costMicros: s.costMicros ?? 0,
    errorCode: s.status === "error" || s.status === "rejected" ? "seeded" : null,
  }));
  await query((db) => writeUsageBatch(db, rows));
}

/** `percentile_cont(p)` as Postgres computes it (linear interpolation), rounded to whole units; null for no values. */
export function percentileCont(values: number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const pos = p * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  const low = sorted[lo] ?? 0;
  return Math.round(low + (pos - lo) * ((sorted[hi] ?? low) - low));
}
