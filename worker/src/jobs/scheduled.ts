import { flushAuditOutbox } from "../audit/outbox.ts";
import { runAutoscaling } from "../autoscaling/job.ts";
import { deleteExpiredConversations, flushConversations } from "../conversations/flush.ts";
import { flushUsage } from "../metering/flush.ts";
import { driftThresholds, flushAndReconcile } from "../metering/reconcile.ts";
import { sweepStaleNodes } from "../nodes/health.ts";
import { advanceLaunches } from "../provisioning/lifecycle.ts";
import { rebuildActiveKeys } from "../auth/key-set.ts";
import { reseedBudgetCounters } from "../limits/budget-seed.ts";
import type { Deps } from "../platform/deps.ts";
import { flushCounters } from "../platform/metrics.ts";
import { coolTrails } from "../memory/cool.ts";
import { flushVotes } from "../council/flush.ts";
import { voteBreadcrumb } from "../council/breadcrumbs.ts";
import { flushRecords as flushFedattnRecords } from "../fedattn/records.ts";
import { deleteEndedSessions } from "../dashboard/session.ts";

/** The hourly Cron Trigger (wrangler.toml `[triggers]`): it also reconciles metered tokens with the engines' counters. */
export const RECONCILE_CRON = "0 * * * *";

/**
 * The Cron Triggers (wrangler.toml `[triggers]`). Every run flushes this isolate's pending counters,
 * then moves queued usage events (records and hourly rollups) and audit events from Redis to
 * Postgres in batches over one connection, with queued conversations (and deletes those past retention), council votes and federated-attention records (a failure leaves the events for the next run), and records
 * nodes that went stale in their health history (nodes/health.ts). The hourly
 * cron (`RECONCILE_CRON`) then cools the memory trails (memory/cool.ts) and reconciles every node (metering/reconcile.ts), after the flush, so
 * the usage of the window is in Postgres.
 */
export async function runScheduled(deps: Deps, cron = "* * * * *"): Promise<void> {
  const { settings, redis, log } = deps;
  await flushCounters(redis, settings.redisPrefix);
  await deps.db(async (db) => {
    const usage = await flushUsage(redis, settings.redisPrefix, db);
    const audit = await flushAuditOutbox(redis, settings.redisPrefix, db);
    // Conversation audit (docs/audit.md): queued records in, records past their tenant's retention out.
    const conversations = await flushConversations(redis, settings.redisPrefix, db);
    const expired = await deleteExpiredConversations(db);
    if (conversations > 0 || expired > 0) log("conversations_flushed", { written: conversations, expired });
    // Council votes (docs/council.md), each leaving a breadcrumb when its council asks for one.
    const votes = await flushVotes(redis, settings.redisPrefix, db, (tx, vote) => voteBreadcrumb(tx, vote, settings.memory.halfLifeHours));
    if (votes > 0) log("council_votes_flushed", { written: votes });
    // Federated-attention session snapshots and contributions (docs/fedattn.md#records).
    const fedattn = await flushFedattnRecords(redis, settings.redisPrefix, db);
    if (fedattn > 0) log("fedattn_records_flushed", { written: fedattn });
    // After the flush, so the records hold everything Redis still had (limits/budget-seed.ts).
    const seeded = await reseedBudgetCounters(db, redis, settings.redisPrefix);
    if (seeded !== null) log("budget_counters_seeded", { budgets: seeded });
    if (usage > 0 || audit > 0) log("outbox_flushed", { usage, audit });
    // Nodes that stopped heartbeating without a word get a "stale" row in their health history.
    const stale = await sweepStaleNodes({ db, redis, prefix: settings.redisPrefix });
    if (stale > 0) log("nodes_went_stale", { stale });
    // SkyPilot launches (docs/provisioning.md): registering → serving, draining → terminating, deadlines.
    try {
      const launches = await advanceLaunches({ db, redis, prefix: settings.redisPrefix });
      if (launches.serving > 0 || launches.terminating > 0) log("node_launches_advanced", { ...launches });
    } catch (err) {
      log("node_launches_advance_failed", { error: err instanceof Error ? err.message : String(err) });
    }
    // Keeps the active-key set exact, and rebuilds it after Redis lost its data (auth/key-set.ts).
    await rebuildActiveKeys(db, redis, settings.redisPrefix);
    if (cron === RECONCILE_CRON) {
      // Memory trails (docs/memory.md): decayed temperatures written back, cold trails past retention
      // removed. Reads decay on their own, so once an hour is plenty; a failure waits for the next hour
      // without keeping the reconciliation from running.
      try {
        const cooling = await coolTrails(db, settings.memory);
        if (cooling.cooled > 0 || cooling.removed > 0) log("memory_trails_cooled", { cooled: cooling.cooled, removed: cooling.removed });
      } catch (err) {
        log("memory_cooling_failed", { error: err instanceof Error ? err.message : String(err) });
      }
      // Dashboard sessions that ended more than a day ago (dashboard/session.ts): the table stays small.
      try {
        const removed = await deleteEndedSessions(db);
        if (removed > 0) log("dashboard_sessions_removed", { removed });
      } catch (err) {
        log("dashboard_session_cleanup_failed", { error: err instanceof Error ? err.message : String(err) });
      }
      await flushAndReconcile({ db, redis, prefix: settings.redisPrefix, thresholds: driftThresholds(settings), log });
    }
  });
  // Autoscaling (docs/autoscaling.md), on connections of its own; it never throws: a failing policy is logged.
  await runAutoscaling(deps);
}
