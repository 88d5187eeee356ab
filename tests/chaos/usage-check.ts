/**
 * After a scenario has recovered: do the usage records in Postgres account for exactly what the
 * clients saw? Every call that got a request id has its one row (the id is the primary key, so a
 * redelivered event cannot make a second); a successful call's row has the very tokens the client was
 * given; a stream cut in band is charged the content it delivered; an error answer is charged nothing;
 * no row is left that no client call explains; and the hourly rollups equal the rows they sum (a
 * redelivery counted twice would show there).
 */
import { expect } from "vitest";
import { usageHourly, usageRecords } from "../../schema/tables/index.ts";
import type { ChaosStack } from "./chaos-stack.ts";
import { outcomes, type ClientCall } from "./traffic.ts";

/** One usage record as the check reads it. */
export interface UsageRow {
  id: string;
  status: string;
  httpStatus: number;
  promptTokens: number;
  completionTokens: number;
  nodeId: string | null;
  at: Date;
}

/** What the check found. */
export interface UsageVerdict {
  calls: number;
  rows: number;
  /** Calls that were served (wholly or in part) and have no row. */
  missing: { requestId: string; kind: string; outcome: string }[];
  /** Calls answered with an HTTP error (nothing served) that have no row. */
  errorsWithoutRow: { requestId: string; kind: string; outcome: string }[];
  /** Rows whose tokens or status differ from what the client was given. */
  wrong: { requestId: string; kind: string; outcome: string; client: string; recorded: string }[];
  /** Streams cut in band, with the content they delivered and the completion tokens charged. */
  cutStreams: { requestId: string; contentChunks: number; completionTokens: number }[];
  /** Rows no call with a request id accounts for. */
  unexplained: UsageRow[];
  /** Calls that ended without an answer, so without a request id (a row may exist for them). */
  callsWithoutId: number;
  /** Totals of usage_records and of usage_hourly (requests, prompt and completion tokens). */
  records: { requests: number; prompt: number; completion: number };
  hourly: { requests: number; prompt: number; completion: number };
  rowsById: Map<string, UsageRow>;
}

async function readRows(c: ChaosStack): Promise<UsageRow[]> {
  return c.db.db
    .select({
      id: usageRecords.id,
      status: usageRecords.status,
      httpStatus: usageRecords.httpStatus,
      promptTokens: usageRecords.promptTokens,
      completionTokens: usageRecords.completionTokens,
      nodeId: usageRecords.nodeId,
      at: usageRecords.at,
    })
    .from(usageRecords);
}

async function readHourly(c: ChaosStack): Promise<UsageVerdict["hourly"]> {
  const rows = await c.db.db.select({ requests: usageHourly.requests, prompt: usageHourly.promptTokens, completion: usageHourly.completionTokens }).from(usageHourly);
  return rows.reduce((t, r) => ({ requests: t.requests + r.requests, prompt: t.prompt + r.prompt, completion: t.completion + r.completion }), { requests: 0, prompt: 0, completion: 0 });
}

/** Compares the rows with the calls (see the file's comment). */
function judge(calls: ClientCall[], rows: UsageRow[], hourly: UsageVerdict["hourly"]): UsageVerdict {
  const rowsById = new Map(rows.map((r) => [r.id, r]));
  const verdict: UsageVerdict = {
    calls: calls.length,
    rows: rows.length,
    missing: [],
    errorsWithoutRow: [],
    wrong: [],
    cutStreams: [],
    unexplained: [],
    callsWithoutId: calls.filter((c) => c.requestId === null).length,
    records: rows.reduce((t, r) => ({ requests: t.requests + 1, prompt: t.prompt + r.promptTokens, completion: t.completion + r.completionTokens }), { requests: 0, prompt: 0, completion: 0 }),
    hourly,
    rowsById,
  };
  const ids = new Set<string>();
  for (const call of calls) {
    if (call.requestId === null) continue;
    ids.add(call.requestId);
    const row = rowsById.get(call.requestId);
    const brief = { requestId: call.requestId, kind: call.kind, outcome: call.outcome };
    if (!row) {
      // An error answered before any byte of the node's reached the client charges nothing; the
      // gateway does not always write a row for it (see docs/testing.md, chaos findings).
      if (call.outcome.startsWith("HTTP ")) verdict.errorsWithoutRow.push(brief);
      else verdict.missing.push(brief);
      continue;
    }
    const recorded = `${row.status} ${row.httpStatus}: ${row.promptTokens}+${row.completionTokens}`;
    if (call.outcome === "ok") {
      const u = call.usage;
      if (!u || row.status !== "ok" || row.promptTokens !== u.prompt || row.completionTokens !== u.completion) {
        verdict.wrong.push({ ...brief, client: u ? `ok: ${u.prompt}+${u.completion}` : "ok without usage", recorded });
      }
    } else if (call.outcome.startsWith("stream cut")) {
      // The gateway records the content chunks the stream delivered as completion tokens (not the
      // opening role chunk, which carries none).
      if (row.status === "ok" || row.completionTokens !== call.contentChunks) verdict.wrong.push({ ...brief, client: `${call.choiceChunks} chunks (${call.contentChunks} with content)`, recorded });
      else verdict.cutStreams.push({ requestId: call.requestId, contentChunks: call.contentChunks, completionTokens: row.completionTokens });
    } else if (row.status === "ok" || row.completionTokens !== 0) {
      verdict.wrong.push({ ...brief, client: call.outcome, recorded });
    }
  }
  verdict.unexplained = rows.filter((r) => !ids.has(r.id));
  return verdict;
}

function settled(v: UsageVerdict): boolean {
  return v.missing.length === 0 && v.records.requests === v.hourly.requests && v.records.prompt === v.hourly.prompt && v.records.completion === v.hourly.completion;
}

/**
 * Runs the scheduled job (the flush of queued usage events) until every call's row is in Postgres
 * and the rollups agree, or `timeoutMs` passes; returns the last verdict either way.
 */
export async function settleUsage(c: ChaosStack, calls: ClientCall[], timeoutMs = 120_000): Promise<UsageVerdict> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await c.stack.runScheduled().catch(() => null);
    const verdict = judge(calls, await readRows(c), await readHourly(c));
    if (settled(verdict) || Date.now() > deadline) return verdict;
    await new Promise((r) => setTimeout(r, 2_000));
  }
}

/** Asserts nothing was lost (every answered call has its row) and nothing counted twice or wrongly. */
export function expectExactUsage(v: UsageVerdict): void {
  expect(v.missing, "calls whose usage never reached Postgres").toEqual([]);
  expect(v.wrong, "rows that differ from what the client was given").toEqual([]);
  // A row without a client-visible request id can only belong to a call that got no answer.
  expect(v.unexplained.length, `rows no client call explains: ${JSON.stringify(v.unexplained.slice(0, 3))}`).toBeLessThanOrEqual(v.callsWithoutId);
  expect(v.hourly, "usage_hourly equals the sum of usage_records").toEqual(v.records);
}

/** The short report a scenario prints: what the clients saw and what the check found. */
export function report(name: string, seconds: number, calls: ClientCall[], v: UsageVerdict, extra: Record<string, unknown> = {}): void {
  const summary = {
    scenario: name,
    seconds: Math.round(seconds),
    clientsSaw: outcomes(calls),
    usage: { calls: v.calls, rows: v.rows, missing: v.missing.length, errorsWithoutRow: v.errorsWithoutRow.length, cutStreams: v.cutStreams.map((s) => `${s.contentChunks} delivered, ${s.completionTokens} charged`), wrong: v.wrong.length, unexplained: v.unexplained.length, callsWithoutId: v.callsWithoutId, records: v.records, hourly: v.hourly },
    ...extra,
  };
  console.log(`chaos ${name}: ${JSON.stringify(summary, null, 2)}`);
  const failed = calls.filter((c) => c.outcome !== "ok");
  if (failed.length > 0) console.log(`chaos ${name}, first failures: ${JSON.stringify(failed.slice(0, 6).map((c) => ({ at: new Date(c.startedAt).toISOString(), kind: c.kind, outcome: c.outcome, detail: c.detail, contentChunks: c.contentChunks, ms: c.endedAt - c.startedAt })), null, 2)}`);
  if (v.missing.length > 0 || v.wrong.length > 0) console.log(`first problems: ${JSON.stringify({ missing: v.missing.slice(0, 5), wrong: v.wrong.slice(0, 5) }, null, 2)}`);
}

/** Rows served (status ok) by each node in each phase, by the row's time: `{ "before kill": { "chaos-1": 12, … }, … }`. */
export function servedByNode(v: UsageVerdict, phases: Record<string, [number, number]>): Record<string, Record<string, number>> {
  const result: Record<string, Record<string, number>> = {};
  for (const [phase, [from, to]] of Object.entries(phases)) {
    const counts: Record<string, number> = {};
    for (const row of v.rowsById.values()) {
      const at = row.at.getTime();
      if (row.status === "ok" && at >= from && at < to) counts[row.nodeId ?? "none"] = (counts[row.nodeId ?? "none"] ?? 0) + 1;
    }
    result[phase] = counts;
  }
  return result;
}
