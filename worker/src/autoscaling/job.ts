/**
 * The autoscaling job, run by the every-minute cron (jobs/scheduled.ts): for each policy it decides
 * (decide.ts) on the current view (view.ts) and the memory of the previous runs (memory.ts); in mode
 * `on` it acts through provisioning (requestLaunch, requestTerminate), in `dry_run` it only records.
 *
 * Recording: every decision goes to `autoscaling_decisions`, except a hold that repeats the last
 * recorded one (same rule) within HOLD_REPEAT_MS, so a quiet policy writes a row an hour, and a
 * dry-run decision that repeats one of the last rows within that time (recordUnlessRepeated); rows
 * older than DECISION_RETENTION_DAYS are deleted as the policy runs. A decision that acted is
 * audited (actor `autoscaler`) in the transaction of its action and its decision row.
 *
 * One run at a time: a Redis lock (`autoscaling:run`, 55 s) makes a concurrent run skip.
 *
 * Degraded modes: Postgres down, the job reads nothing and does nothing (logged). Redis down, the
 * live state is unknown: every policy holds (`no_live_state`, recorded once). The memory alone
 * unreadable: the clocks start over. One policy failing (an action refused, a query timing out) is
 * logged and leaves the others and the rest of the cron job running.
 */
import { and, desc, eq, gt, lt } from "drizzle-orm";
import { autoscalingDecisions } from "../../../schema/tables/index.ts";
import type { AdminDb } from "../admin/store.ts";
import { newId, recordAudit } from "../admin/store.ts";
import type { Deps } from "../platform/deps.ts";
import { liveNodesKey, type LiveNode } from "../nodes/live.ts";
import { requestLaunch, requestTerminate } from "../provisioning/launches.ts";
import { routingCacheKey } from "../routing/snapshot.ts";
import { decide, EMPTY_MEMORY, holdWithoutLiveState, type Decision, type Policy, type ScalingMemory } from "./decide.ts";
import { readMemories, writeMemory } from "./memory.ts";
import { loadFleet, viewOf } from "./view.ts";

/** The actor of the autoscaler's launches, terminations and audit rows. */
export const AUTOSCALER_ACTOR = "autoscaler";
/** A repeated identical hold is recorded again after this long (so the table shows the policy is alive). */
export const HOLD_REPEAT_MS = 60 * 60_000;
/** Decisions older than this are deleted. */
export const DECISION_RETENTION_DAYS = 30;

/** A decision as recorded. */
export type DecisionRow = typeof autoscalingDecisions.$inferSelect;

/** What one policy's run did. */
export interface PolicyRun {
  model: string;
  region: string;
  decisions: Decision[];
  /** Decision rows written (repeated holds are not). */
  recorded: number;
  /** Launches created and nodes drained (mode `on` only). */
  launched: number;
  drained: number;
  error?: string;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The Redis key that makes one run at a time (the cron of every isolate and region, `runScheduled` by hand). */
export function runLockKey(prefix: string): string {
  return `${prefix}autoscaling:run`;
}
/** A run holding the lock longer than this is taken for dead (the cron runs every 60 s). */
const RUN_LOCK_SECONDS = 55;
const RELEASE_LOCK = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end`;

/**
 * Runs the autoscaler once over every policy, unless another run holds the lock: two runs at once
 * (the every-minute cron in two regions, or one started by hand) would both see the same sustained
 * queue and both launch. Never throws: failures are logged and returned.
 */
export async function runAutoscaling(deps: Deps, now = Date.now()): Promise<PolicyRun[]> {
  const { redis, settings, log } = deps;
  const token = crypto.randomUUID();
  let locked = false;
  try {
    locked = (await redis.set(runLockKey(settings.redisPrefix), token, { nx: true, ex: RUN_LOCK_SECONDS })) !== null;
    if (!locked) {
      log("autoscaling_skipped", { reason: "another run holds the lock" });
      return [];
    }
  } catch (err) {
    // Redis down: the run goes on and holds every policy (no live state), which is safe without a lock.
    log("autoscaling_lock_unavailable", { error: message(err) });
  }
  try {
    return await runPolicies(deps, now);
  } finally {
    if (locked) await redis.eval(RELEASE_LOCK, [runLockKey(settings.redisPrefix)], [token]).catch((err: unknown) => log("autoscaling_unlock_failed", { error: message(err) }));
  }
}

async function runPolicies(deps: Deps, now: number): Promise<PolicyRun[]> {
  const { redis, settings, log } = deps;
  let fleet;
  try {
    fleet = await deps.db((db) => loadFleet(db, now));
  } catch (err) {
    log("autoscaling_failed", { stage: "read_policies", error: message(err) });
    return [];
  }
  if (fleet.policies.length === 0) return [];
  let live: Record<string, LiveNode> | null = null;
  let liveError = "";
  try {
    live = (await redis.hgetall<Record<string, LiveNode>>(liveNodesKey(settings.redisPrefix))) ?? {};
  } catch (err) {
    liveError = message(err);
    log("autoscaling_live_state_unavailable", { error: liveError });
  }
  let memories: ScalingMemory[];
  try {
    memories = await readMemories(redis, settings.redisPrefix, fleet.policies);
  } catch (err) {
    if (live !== null) log("autoscaling_memory_unavailable", { error: message(err) });
    memories = fleet.policies.map(() => EMPTY_MEMORY);
  }
  const runs: PolicyRun[] = [];
  for (const [i, policy] of fleet.policies.entries()) {
    const run: PolicyRun = { model: policy.model, region: policy.region, decisions: [], recorded: 0, launched: 0, drained: 0 };
    runs.push(run);
    try {
      const memory = memories[i] ?? EMPTY_MEMORY;
      const result = live === null ? null : decide(policy, viewOf(policy, fleet, live, now), memory, now);
      run.decisions = result ? result.decisions : [holdWithoutLiveState(policy, liveError)];
      await applyDecisions(deps, policy, run, now);
      if (result) await writeMemory(redis, settings.redisPrefix, policy, result.memory);
      for (const d of run.decisions) {
        if (d.action !== "hold") log("autoscaling_decision", { model: policy.model, region: policy.region, action: d.action, mode: policy.mode, reason: d.reason });
      }
    } catch (err) {
      run.error = message(err);
      log("autoscaling_policy_failed", { model: policy.model, region: policy.region, error: run.error });
    }
  }
  return runs;
}

/** Acts (mode `on`) and records each decision of a run; prunes the policy's old decisions. */
async function applyDecisions(deps: Deps, policy: Policy, run: PolicyRun, now: number): Promise<void> {
  const dryRun = policy.mode !== "on";
  let dropSnapshot = false;
  for (const decision of run.decisions) {
    if (decision.action === "hold" || dryRun) {
      const recorded = await deps.db((db) => recordUnlessRepeated(db, policy, decision, now));
      if (recorded) run.recorded++;
      continue;
    }
    try {
      await deps.db((db) =>
        db.transaction(async (tx) => {
          const acted = dryRun ? { launchIds: [] as string[], drained: false } : await act(tx, policy, decision);
          const id = await insertDecision(tx, policy, decision, dryRun, now, acted.launchIds);
          if (!dryRun) {
            await recordAudit(tx, AUTOSCALER_ACTOR, `autoscaling.${decision.action}`, "autoscaling_policy", `${policy.model}/${policy.region}`, null, {
              decision_id: id,
              reason: decision.reason,
              ...("nodeId" in decision ? { node_id: decision.nodeId } : {}),
              launch_ids: acted.launchIds,
              details: decision.details,
            });
          }
          run.recorded++;
          run.launched += acted.launchIds.length;
          if (acted.drained) run.drained++;
          dropSnapshot ||= acted.drained;
        }),
      );
    } catch (err) {
      // The action was refused (say, the model left the catalogue): the refusal is the record.
      const error = message(err);
      await deps.db((db) => insertDecision(db, policy, { ...decision, reason: `${decision.reason} Not done: ${error}` }, dryRun, now, [], error));
      run.recorded++;
      deps.log("autoscaling_action_failed", { model: policy.model, region: policy.region, action: decision.action, error });
    }
  }
  // A drained node must leave routing now, not when the snapshot expires (provisioning/launches.ts).
  if (dropSnapshot) await deps.redis.del(routingCacheKey(deps.settings.redisPrefix));
  const cutoff = new Date(now - DECISION_RETENTION_DAYS * 86_400_000);
  await deps.db((db) =>
    db.delete(autoscalingDecisions).where(and(eq(autoscalingDecisions.model, policy.model), eq(autoscalingDecisions.region, policy.region), lt(autoscalingDecisions.at, cutoff))),
  );
}

/** Carries a decision out through provisioning (in the caller's transaction). */
async function act(tx: AdminDb, policy: Policy, decision: Exclude<Decision, { action: "hold" }>): Promise<{ launchIds: string[]; drained: boolean }> {
  const base = { provider: policy.provider, region: policy.region, model: policy.model, gpu: policy.gpu, spot: policy.spot, requestedBy: AUTOSCALER_ACTOR };
  switch (decision.action) {
    case "launch": {
      const rows = await requestLaunch(tx, { ...base, reason: `autoscaler: ${decision.reason}` }, decision.count);
      return { launchIds: rows.map((r) => r.id), drained: false };
    }
    case "replace": {
      const rows = await requestLaunch(tx, { ...base, reason: `autoscaler: ${decision.reason}`, replacesNodeId: decision.nodeId }, 1);
      return { launchIds: rows.map((r) => r.id), drained: false };
    }
    case "drain": {
      const result = await requestTerminate(tx, decision.nodeId, `autoscaler: ${decision.reason}`, AUTOSCALER_ACTOR);
      return { launchIds: [], drained: result.nodeDrained };
    }
  }
}

/** Writes a decision row; returns its id. */
async function insertDecision(db: AdminDb, policy: Policy, decision: Decision, dryRun: boolean, now: number, launchIds: string[], error?: string): Promise<string> {
  const id = newId("asd");
  await db.insert(autoscalingDecisions).values({
    id,
    at: new Date(now),
    model: policy.model,
    region: policy.region,
    action: decision.action,
    reason: decision.reason,
    nodeId: "nodeId" in decision ? decision.nodeId : null,
    launchId: launchIds[0] ?? null,
    dryRun,
    details: {
      rule: decision.rule,
      ...decision.details,
      ...(decision.action === "launch" ? { count: decision.count } : {}),
      ...(launchIds.length > 0 ? { launch_ids: launchIds } : {}),
      ...(error === undefined ? {} : { error }),
    },
  });
  return id;
}

/** What makes two decisions the same for recording: action, rule, node and count. */
function signature(action: string, details: Record<string, unknown>, nodeId: string | null): string {
  return JSON.stringify([action, details.rule ?? null, nodeId, details.count ?? null]);
}

/**
 * Records a decision that changes nothing (a hold, or anything in dry run) unless it repeats one
 * already recorded within HOLD_REPEAT_MS: a hold repeating the last row, a dry-run action repeating
 * any of the last rows. A dry-run policy that would launch every minute writes one row an hour.
 */
async function recordUnlessRepeated(db: AdminDb, policy: Policy, decision: Decision, now: number): Promise<boolean> {
  const recent = await db
    .select({ action: autoscalingDecisions.action, at: autoscalingDecisions.at, details: autoscalingDecisions.details, dryRun: autoscalingDecisions.dryRun, nodeId: autoscalingDecisions.nodeId })
    .from(autoscalingDecisions)
    .where(and(eq(autoscalingDecisions.model, policy.model), eq(autoscalingDecisions.region, policy.region), gt(autoscalingDecisions.at, new Date(now - HOLD_REPEAT_MS))))
    .orderBy(desc(autoscalingDecisions.at))
    .limit(10);
  const dryRun = policy.mode !== "on";
  const nodeId = "nodeId" in decision ? decision.nodeId : null;
  const mine = signature(decision.action, { ...decision.details, rule: decision.rule, count: decision.action === "launch" ? decision.count : null }, nodeId);
  const same = (r: (typeof recent)[number]): boolean => r.dryRun === dryRun && signature(r.action, r.details, r.nodeId) === mine;
  const repeated = decision.action === "hold" ? recent[0] !== undefined && same(recent[0]) : recent.some(same);
  if (repeated) return false;
  await insertDecision(db, policy, decision, dryRun, now, []);
  return true;
}
