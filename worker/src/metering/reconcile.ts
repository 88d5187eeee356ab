/**
 * Reconciliation: per node, the tokens its engines counted (lifetime counters from heartbeats,
 * differenced against a stored baseline) against the tokens the gateway metered for requests that
 * node served in the same window. The drift is recorded in `reconciliations`; a drift above the
 * threshold is an alert. Runs hourly from the scheduled job and on demand from the admin API.
 * docs/reconciliation.md explains how to read it.
 */
import { and, eq, sql } from "drizzle-orm";
import type { Redis } from "@upstash/redis/cloudflare";
import { nodeTokenCounters, reconciliations, usageRecords, type EngineTokenCounters } from "../../../schema/tables/index.ts";
import type { Logger } from "../env.ts";
import type { Settings } from "../settings.ts";
import { liveCounters, liveNodesKey, type LiveNode } from "../nodes/live.ts";
import type { Db } from "../platform/db.ts";
import { countEvent, flushCounters } from "../platform/metrics.ts";
import { flushUsage } from "./flush.ts";
import { pendingFor, pendingUsage, type PendingSnapshot } from "./pending.ts";

/** A written reconciliation row. */
export type Reconciliation = typeof reconciliations.$inferSelect;

/** When a window is an alert: ratio above `driftRatio` and at least `minDriftTokens` tokens of drift. */
export interface DriftThresholds {
  driftRatio: number;
  minDriftTokens: number;
}

/** The thresholds configured by RECONCILE_DRIFT_THRESHOLD and RECONCILE_MIN_DRIFT_TOKENS. */
export function driftThresholds(settings: Settings): DriftThresholds {
  return { driftRatio: settings.reconcileDriftThreshold, minDriftTokens: settings.reconcileMinDriftTokens };
}

/** What happened to one node in a run. */
export type NodeOutcome =
  | { nodeId: string; outcome: "reconciled"; row: Reconciliation }
  /** First sample of the node: stored as the start of its first window, nothing compared. */
  | { nodeId: string; outcome: "baseline"; sampledAt: Date }
  /** No engine of the node reports both token counters. */
  | { nodeId: string; outcome: "no_counters" }
  /** No heartbeat since the baseline (or another run just reconciled this window). */
  | { nodeId: string; outcome: "no_new_sample" }
  /** Usage events of requests that ended inside the window are still in Redis: next run. */
  | { nodeId: string; outcome: "usage_pending"; events: number };

/** Everything a run needs. */
export interface ReconcileDeps {
  db: Db;
  redis: Redis;
  prefix: string;
  thresholds: DriftThresholds;
  log: Logger;
}

/** Engine tokens of one window. */
export interface EngineWindow {
  promptTokens: number;
  generationTokens: number;
  /** Engines whose counter went down (a restart) or that were not in the baseline. */
  restarted: string[];
  /** The baseline of the next window: the current counters, plus the baseline's entries of engines that did not report. */
  next: Record<string, EngineTokenCounters>;
}

/**
 * Engine tokens between the baseline and the current counters. An engine whose counter went down
 * restarted (its tokens between the baseline and the restart are lost), and an engine new since the
 * baseline has counted everything since its start inside the window: both count their current value.
 * An engine missing from the current sample adds nothing now and keeps its baseline, so its tokens
 * show up in the window where it reports again.
 */
export function engineWindow(baseline: Record<string, EngineTokenCounters>, current: Record<string, EngineTokenCounters>): EngineWindow {
  let promptTokens = 0;
  let generationTokens = 0;
  const restarted: string[] = [];
  for (const [id, now] of Object.entries(current)) {
    const base = baseline[id];
    if (!base || now.promptTokens < base.promptTokens || now.generationTokens < base.generationTokens) {
      restarted.push(id);
      promptTokens += now.promptTokens;
      generationTokens += now.generationTokens;
    } else {
      promptTokens += now.promptTokens - base.promptTokens;
      generationTokens += now.generationTokens - base.generationTokens;
    }
  }
  return { promptTokens, generationTokens, restarted, next: { ...baseline, ...current } };
}

/** Drift = engine − metered, its ratio to the engine's tokens, and whether it is an alert. */
export function driftOf(
  engine: { promptTokens: number; generationTokens: number },
  metered: { promptTokens: number; completionTokens: number },
  thresholds: DriftThresholds,
): { driftPromptTokens: number; driftGenerationTokens: number; driftRatio: number; alert: boolean } {
  const driftPromptTokens = engine.promptTokens - metered.promptTokens;
  const driftGenerationTokens = engine.generationTokens - metered.completionTokens;
  const absolute = Math.abs(driftPromptTokens) + Math.abs(driftGenerationTokens);
  const driftRatio = absolute / Math.max(1, engine.promptTokens + engine.generationTokens);
  return { driftPromptTokens, driftGenerationTokens, driftRatio, alert: driftRatio > thresholds.driftRatio && absolute >= thresholds.minDriftTokens };
}

/** The row id: one row per node and window end, so a rerun writes nothing twice. */
export function reconciliationId(nodeId: string, windowEnd: Date): string {
  return `rec_${nodeId}_${windowEnd.getTime()}`;
}

/**
 * Tokens metered for requests the node served that ended in [start, end). Filed by end time, not
 * start time: a request still running at the window end is in no window yet, so nothing metered
 * can be missed by a run, and a request straddling the boundary shows up as opposite drifts in two
 * consecutive windows, which cancel.
 */
async function meteredTokens(db: Db, nodeId: string, start: Date, end: Date): Promise<{ promptTokens: number; completionTokens: number }> {
  const endedAt = sql`(${usageRecords.at} + ${usageRecords.latencyMs} * interval '1 millisecond')`;
  const [row] = await db
    .select({
      promptTokens: sql<number>`coalesce(sum(${usageRecords.promptTokens}), 0)::bigint`.mapWith(Number),
      completionTokens: sql<number>`coalesce(sum(${usageRecords.completionTokens}), 0)::bigint`.mapWith(Number),
    })
    .from(usageRecords)
    .where(
      and(
        eq(usageRecords.nodeId, nodeId),
        sql`${usageRecords.at} < ${end.toISOString()}::timestamptz`,
        sql`${endedAt} >= ${start.toISOString()}::timestamptz`,
        sql`${endedAt} < ${end.toISOString()}::timestamptz`,
      ),
    );
  return row ?? { promptTokens: 0, completionTokens: 0 };
}

async function reconcileNode(deps: ReconcileDeps, nodeId: string, live: LiveNode, pending: PendingSnapshot): Promise<NodeOutcome> {
  const { db } = deps;
  const counters = liveCounters(live);
  if (Object.keys(counters).length === 0) return { nodeId, outcome: "no_counters" };
  const end = new Date(live.at);
  const [baseline] = await db.select().from(nodeTokenCounters).where(eq(nodeTokenCounters.nodeId, nodeId));
  if (!baseline) {
    await db.insert(nodeTokenCounters).values({ nodeId, sampledAt: end, engines: counters }).onConflictDoNothing();
    return { nodeId, outcome: "baseline", sampledAt: end };
  }
  if (live.at <= baseline.sampledAt.getTime()) return { nodeId, outcome: "no_new_sample" };
  const waiting = pendingFor(pending, nodeId, live.at);
  if (waiting > 0) return { nodeId, outcome: "usage_pending", events: waiting };

  const engine = engineWindow(baseline.engines, counters);
  const metered = await meteredTokens(db, nodeId, baseline.sampledAt, end);
  const drift = driftOf(engine, metered, deps.thresholds);
  const row = await db.transaction(async (tx) => {
    // Moving the baseline first, only from the value this run read, makes concurrent runs safe: the
    // loser updates nothing and writes no row.
    const moved = await tx
      .update(nodeTokenCounters)
      .set({ sampledAt: end, engines: engine.next })
      .where(and(eq(nodeTokenCounters.nodeId, nodeId), eq(nodeTokenCounters.sampledAt, baseline.sampledAt)))
      .returning({ nodeId: nodeTokenCounters.nodeId });
    if (moved.length === 0) return null;
    const [inserted] = await tx
      .insert(reconciliations)
      .values({
        id: reconciliationId(nodeId, end),
        nodeId,
        windowStart: baseline.sampledAt,
        windowEnd: end,
        enginePromptTokens: engine.promptTokens,
        engineGenerationTokens: engine.generationTokens,
        meteredPromptTokens: metered.promptTokens,
        meteredCompletionTokens: metered.completionTokens,
        ...drift,
        engineRestarted: engine.restarted.length > 0,
      })
      .onConflictDoNothing({ target: reconciliations.id })
      .returning();
    return inserted ?? null;
  });
  if (!row) return { nodeId, outcome: "no_new_sample" };
  if (row.alert) {
    countEvent("switchyard_reconciliation_alerts_total", { node: nodeId });
    deps.log("reconciliation_drift_alert", {
      level: "alert",
      nodeId,
      windowStart: row.windowStart.toISOString(),
      windowEnd: row.windowEnd.toISOString(),
      enginePromptTokens: row.enginePromptTokens,
      engineGenerationTokens: row.engineGenerationTokens,
      meteredPromptTokens: row.meteredPromptTokens,
      meteredCompletionTokens: row.meteredCompletionTokens,
      driftPromptTokens: row.driftPromptTokens,
      driftGenerationTokens: row.driftGenerationTokens,
      driftRatio: row.driftRatio,
      engineRestarted: engine.restarted,
    });
  }
  return { nodeId, outcome: "reconciled", row };
}

/**
 * Reconciles every node of the live hash (or only `nodeIds`) once, against the usage already in
 * Postgres. Nodes with usage events of their window still in Redis are skipped (`usage_pending`).
 */
export async function reconcileNodes(deps: ReconcileDeps, nodeIds: readonly string[] | null = null): Promise<NodeOutcome[]> {
  const live = (await deps.redis.hgetall<Record<string, LiveNode>>(liveNodesKey(deps.prefix))) ?? {};
  const pending = await pendingUsage(deps.redis, deps.prefix);
  const outcomes: NodeOutcome[] = [];
  for (const nodeId of Object.keys(live).sort()) {
    const entry = live[nodeId];
    if (!entry || (nodeIds !== null && !nodeIds.includes(nodeId))) continue;
    outcomes.push(await reconcileNode(deps, nodeId, entry, pending));
  }
  return outcomes;
}

/** Flush attempts before nodes whose usage is still in Redis are left for the next run, and the pause between them. */
const FLUSH_ATTEMPTS = 3;
const FLUSH_RETRY_MS = 2_000;

/**
 * Flushes the usage outbox, then reconciles. Reconciling must never count a window whose events
 * are still in Redis, so a node with events of its window left after the flush (they arrived during
 * it, or a concurrent flush holds them in flight) is retried after another flush, and skipped with
 * a log line after FLUSH_ATTEMPTS; the next run covers its window then.
 */
export async function flushAndReconcile(deps: ReconcileDeps, nodeIds: readonly string[] | null = null): Promise<{ flushed: number; outcomes: NodeOutcome[] }> {
  try {
    const result = await reconcileRun(deps, nodeIds);
    countEvent("switchyard_reconciliation_runs_total", { result: "ok" });
    return result;
  } catch (err) {
    countEvent("switchyard_reconciliation_runs_total", { result: "failed" });
    throw err;
  } finally {
    await flushCounters(deps.redis, deps.prefix).catch(() => undefined);
  }
}

async function reconcileRun(deps: ReconcileDeps, nodeIds: readonly string[] | null): Promise<{ flushed: number; outcomes: NodeOutcome[] }> {
  let flushed = 0;
  const done: NodeOutcome[] = [];
  let todo = nodeIds;
  for (let attempt = 1; ; attempt++) {
    flushed += await flushUsage(deps.redis, deps.prefix, deps.db);
    const outcomes = await reconcileNodes(deps, todo);
    const pending = outcomes.filter((o) => o.outcome === "usage_pending");
    done.push(...outcomes.filter((o) => o.outcome !== "usage_pending"));
    if (pending.length === 0 || attempt >= FLUSH_ATTEMPTS) {
      done.push(...pending);
      for (const p of pending) deps.log("reconciliation_skipped", { nodeId: p.nodeId, reason: "usage events of the window still queued in Redis", events: p.events });
      break;
    }
    todo = pending.map((p) => p.nodeId);
    await new Promise((resolve) => setTimeout(resolve, FLUSH_RETRY_MS));
  }
  const rows = done.filter((o) => o.outcome === "reconciled");
  deps.log("reconciliation_run", {
    flushed,
    reconciled: rows.length,
    alerts: rows.filter((o) => o.row.alert).length,
    baselines: done.filter((o) => o.outcome === "baseline").length,
    pending: done.filter((o) => o.outcome === "usage_pending").length,
  });
  return { flushed, outcomes: done.sort((a, b) => a.nodeId.localeCompare(b.nodeId)) };
}
