/**
 * The launch states the gateway itself moves, from the nodes' live state in Redis (never on the
 * heartbeat path): the scheduled job (jobs/scheduled.ts) calls `advanceLaunches` every minute.
 *
 * - registering → serving on the node's first fresh `ready` heartbeat;
 * - registering → terminating (with an error, so it ends `failed`) when no ready heartbeat came
 *   within REGISTRATION_DEADLINE_MS of the cluster coming up;
 * - launching → terminating (with an error) when the provisioner that claimed it went silent for
 *   CLAIM_LEASE_MS (its `sky launch` would have timed out long before);
 * - draining → terminating once the node has nothing in flight in a heartbeat sent at least
 *   DRAIN_SETTLE_MS after the drain (so requests routed by isolates that had not yet seen the drain
 *   are counted), when it stopped heartbeating (stale or gone), or after DRAIN_DEADLINE_MS anyway.
 *
 * Redis failing: the caller logs it and the states wait for the next run (nothing is torn down on
 * missing data, except past the deadlines, which need no live state).
 */
import { inArray } from "drizzle-orm";
import type { Redis } from "@upstash/redis/cloudflare";
import { nodeLaunches } from "../../../schema/tables/index.ts";
import { recordAudit, type AdminDb } from "../admin/store.ts";
import { isStale, liveNodesKey, type LiveNode } from "../nodes/live.ts";
import { CLAIM_LEASE_MS, DRAIN_DEADLINE_MS, REGISTRATION_DEADLINE_MS, transition, type LaunchRow, type LaunchState } from "./launches.ts";

/** A heartbeat must be this much younger than the drain for its zero in-flight to count. */
export const DRAIN_SETTLE_MS = 10_000;
/** The audit actor of the scheduled job's transitions. */
const ACTOR = "scheduler";

/** What one run changed. */
export interface LaunchProgress {
  serving: number;
  terminating: number;
}

/** What should happen to a launch now, or null (pure: the tests and the job share it). */
export function nextStep(launch: Pick<LaunchRow, "state" | "updatedAt">, live: LiveNode | undefined, now: number): { to: LaunchState; error: string | null; why: string } | null {
  const since = now - launch.updatedAt.getTime();
  const fresh = live !== undefined && !isStale(live, now);
  switch (launch.state) {
    case "registering":
      if (fresh && live.status === "ready") return { to: "serving", error: null, why: "first ready heartbeat" };
      if (since > REGISTRATION_DEADLINE_MS) {
        return { to: "terminating", error: `The node sent no ready heartbeat within ${REGISTRATION_DEADLINE_MS / 60_000} min of its cluster coming up (see the run log: sky logs <cluster>).`, why: "registration deadline" };
      }
      return null;
    case "launching":
      if (since > CLAIM_LEASE_MS) return { to: "terminating", error: `The provisioner did not report the launch within ${CLAIM_LEASE_MS / 60_000} min.`, why: "provisioner silent" };
      return null;
    case "draining":
      if (!fresh) return { to: "terminating", error: null, why: "no live heartbeat" };
      if (live.inFlight === 0 && live.at >= launch.updatedAt.getTime() + DRAIN_SETTLE_MS) return { to: "terminating", error: null, why: "nothing in flight" };
      if (since > DRAIN_DEADLINE_MS) return { to: "terminating", error: null, why: "drain deadline" };
      return null;
    default:
      return null;
  }
}

/** Moves the launches whose node's live state (or a deadline) says so; audits each move. */
export async function advanceLaunches(deps: { db: AdminDb; redis: Redis; prefix: string; now?: number }): Promise<LaunchProgress> {
  const progress: LaunchProgress = { serving: 0, terminating: 0 };
  const rows = await deps.db.select().from(nodeLaunches).where(inArray(nodeLaunches.state, ["launching", "registering", "draining"]));
  if (rows.length === 0) return progress;
  const ids = rows.map((r) => r.nodeId);
  const live = (await deps.redis.hmget<Record<string, LiveNode | null>>(liveNodesKey(deps.prefix), ...ids)) ?? {};
  const now = deps.now ?? Date.now();
  for (const row of rows) {
    const step = nextStep(row, live[row.nodeId] ?? undefined, now);
    if (!step) continue;
    const after = await transition(deps.db, row.id, [row.state], step.to, step.error ?? undefined);
    if (!after) continue;
    await recordAudit(deps.db, ACTOR, `node.launch.${after.state}`, "node", after.nodeId, null, {
      launch_id: after.id,
      before: { state: row.state },
      after: { state: after.state, error: after.error },
      why: step.why,
    });
    if (after.state === "serving") progress.serving++;
    else progress.terminating++;
  }
  return progress;
}
