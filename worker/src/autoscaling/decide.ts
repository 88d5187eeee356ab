/**
 * The autoscaler's decision for one policy (a model in a region), as a pure function of the policy,
 * what the fleet looks like now, what the previous runs remembered and the time. Nothing here
 * reads a clock, Redis or Postgres: the job (job.ts) gathers the view, calls `decide`, acts on the
 * decisions and stores the memory it returns; `GET /admin/autoscaling` calls it without acting.
 *
 * The rules, in order (docs/autoscaling.md):
 *  1. replace a node that got a spot interruption notice, before it goes away (never above max);
 *  2. launch up to `min_nodes`;
 *  3. launch when the waiting requests per node stay above `target_queue_per_node` for
 *     `scale_up_after_seconds` (never above max);
 *  4. drain, then terminate, a node launched by provisioning that idled `idle_seconds` (never below
 *     min, never while the queue is above target);
 *  5. hold otherwise.
 * Launches in progress (pending, launching, registering) count as capacity already on its way, so
 * one burst does not launch twice.
 */
import type { autoscalingPolicies, LAUNCH_STATES } from "../../../schema/tables/index.ts";

/** A policy as stored. */
export type Policy = typeof autoscalingPolicies.$inferSelect;

/** A launch's state (schema/tables/provisioning.ts). */
export type LaunchState = (typeof LAUNCH_STATES)[number];

/** A registered node of the policy's model in its region, with its live load. */
export interface ViewNode {
  id: string;
  /** What its last heartbeat said, or `stale` (no heartbeat for three intervals, or none in Redis). */
  status: "ready" | "degraded" | "draining" | "unhealthy" | "stale";
  /** The registry's admin status: an operator's drain or disable takes the node out of capacity. */
  adminStatus: "active" | "draining" | "disabled";
  /** vLLM's waiting requests (max over engines; 0 when not reported), the backplane's in flight, vLLM's running. */
  waiting: number;
  inFlight: number;
  running: number;
  /** Its launch, when provisioning launched it (only those are terminated by the autoscaler). */
  launch: { id: string; state: LaunchState; spot: boolean; replacesNodeId: string | null } | null;
  /** The latest spot interruption notice still in its window (unix ms), if any. */
  spotNotice: { receivedAt: number; deadline: number | null; action: string } | null;
}

/** A launch on its way (pending, launching, registering) whose node does not serve yet. */
export interface ViewLaunch {
  id: string;
  nodeId: string;
  state: LaunchState;
  replacesNodeId: string | null;
}

/** What the autoscaler sees of one model in one region. */
export interface ScalingView {
  nodes: ViewNode[];
  launches: ViewLaunch[];
  /** Node ids some launch (in any state but failed) already replaces: their notices are handled. */
  replaced: string[];
}

/** What runs remember between them (Redis, memory.ts): when the queue went above target, when each node went idle. */
export interface ScalingMemory {
  /** Unix ms when the waiting per node last went above target (null: it is not). */
  queueAboveSince: number | null;
  /** Node id → unix ms since when it has had nothing in flight or waiting. */
  idleSince: Record<string, number>;
}

/** The memory of a policy that never ran. */
export const EMPTY_MEMORY: ScalingMemory = { queueAboveSince: null, idleSince: {} };

/** What the autoscaler decided. */
export type Decision =
  | { action: "launch"; count: number; rule: "below_min" | "queue"; reason: string; details: Record<string, unknown> }
  | { action: "replace"; nodeId: string; rule: "spot_notice"; reason: string; details: Record<string, unknown> }
  | { action: "drain"; nodeId: string; rule: "idle"; reason: string; details: Record<string, unknown> }
  | { action: "hold"; rule: HoldRule; reason: string; details: Record<string, unknown> };

/** Why it held (the job records a hold again only when this changes, job.ts). */
export type HoldRule = "steady" | "queue_sustaining" | "at_max" | "spot_at_max" | "no_live_state";

/** The decisions of one run and the memory for the next. */
export interface DecideResult {
  decisions: Decision[];
  memory: ScalingMemory;
  /** The numbers the decisions were taken on. */
  figures: Figures;
}

/** The numbers the rules look at, in every decision's details. */
export interface Figures {
  serving: number;
  on_the_way: number;
  capacity: number;
  waiting_total: number;
  waiting_per_node: number | null;
  target_queue_per_node: number;
  min_nodes: number;
  max_nodes: number;
}

/** True when the node takes traffic: reported ready or degraded, fresh, not drained by an operator nor noticed. */
function isServing(n: ViewNode): boolean {
  return (n.status === "ready" || n.status === "degraded") && n.adminStatus === "active" && n.spotNotice === null;
}

/** True when the node has nothing to do. */
function isIdle(n: ViewNode): boolean {
  return n.inFlight === 0 && n.waiting === 0 && n.running === 0;
}

const seconds = (ms: number): number => Math.round(ms / 1000);
const round2 = (x: number): number => Math.round(x * 100) / 100;

/** Decides what to do for `policy` given `view` and `memory` at `now` (unix ms). */
export function decide(policy: Policy, view: ScalingView, memory: ScalingMemory, now: number): DecideResult {
  const decisions: Decision[] = [];
  const serving = view.nodes.filter(isServing);
  const servingIds = new Set(serving.map((n) => n.id));
  // A launch whose node already heartbeats ready is counted once, as serving.
  const onTheWay = view.launches.filter((l) => !servingIds.has(l.nodeId));
  let capacity = serving.length + onTheWay.length;
  const waitingTotal = serving.reduce((sum, n) => sum + n.waiting, 0);
  const perNode = capacity > 0 ? waitingTotal / capacity : waitingTotal > 0 ? Number.POSITIVE_INFINITY : 0;
  const figures: Figures = {
    serving: serving.length,
    on_the_way: onTheWay.length,
    capacity,
    waiting_total: waitingTotal,
    waiting_per_node: Number.isFinite(perNode) ? round2(perNode) : null,
    target_queue_per_node: policy.targetQueuePerNode,
    min_nodes: policy.minNodes,
    max_nodes: policy.maxNodes,
  };
  const at = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({ ...figures, ...extra });

  // 1. Spot notices: a replacement starts while the noticed node still serves what it has.
  const replaced = new Set(view.replaced);
  for (const n of view.nodes) {
    if (n.spotNotice === null || replaced.has(n.id)) continue;
    const deadline = n.spotNotice.deadline === null ? "no deadline given" : `goes away in ${Math.max(0, seconds(n.spotNotice.deadline - now))} s`;
    if (capacity >= policy.maxNodes) {
      decisions.push({
        action: "hold",
        rule: "spot_at_max",
        reason: `Node ${n.id} got a spot notice (${n.spotNotice.action}, ${deadline}) but ${capacity} nodes serve or are on the way without it, the maximum (${policy.maxNodes}): no replacement.`,
        details: at({ node_id: n.id }),
      });
      continue;
    }
    capacity++;
    decisions.push({
      action: "replace",
      nodeId: n.id,
      rule: "spot_notice",
      reason: `Node ${n.id} got a spot notice (${n.spotNotice.action}, ${deadline}): launching a replacement.`,
      details: at({ node_id: n.id, notice_action: n.spotNotice.action, deadline: n.spotNotice.deadline === null ? null : new Date(n.spotNotice.deadline).toISOString() }),
    });
  }

  // 2. The minimum.
  if (capacity < policy.minNodes) {
    const count = policy.minNodes - capacity;
    decisions.push({
      action: "launch",
      count,
      rule: "below_min",
      reason: `${capacity} node${capacity === 1 ? "" : "s"} serving or on the way, below the minimum of ${policy.minNodes}: launching ${count}.`,
      details: at({ count }),
    });
    capacity += count;
  }

  // 3. The queue, sustained.
  let queueAboveSince: number | null = null;
  const above = perNode > policy.targetQueuePerNode;
  if (above) {
    const since = memory.queueAboveSince ?? now;
    const heldMs = now - since;
    const perNodeText = Number.isFinite(perNode) ? String(round2(perNode)) : `${waitingTotal} with no node`;
    if (capacity >= policy.maxNodes) {
      // No room: say so at once, and keep the clock so a launch follows as soon as room appears.
      queueAboveSince = since;
      decisions.push({
        action: "hold",
        rule: "at_max",
        reason: `Waiting per node ${perNodeText} is above the target ${policy.targetQueuePerNode} (for ${seconds(heldMs)} s), but ${capacity} nodes serve or are on the way, the maximum (${policy.maxNodes}).`,
        details: at({ above_for_seconds: seconds(heldMs) }),
      });
    } else if (heldMs < policy.scaleUpAfterSeconds * 1000) {
      queueAboveSince = since;
      decisions.push({
        action: "hold",
        rule: "queue_sustaining",
        reason: `Waiting per node ${perNodeText} is above the target ${policy.targetQueuePerNode} for ${seconds(heldMs)} s of the ${policy.scaleUpAfterSeconds} s it must last before a launch.`,
        details: at({ above_for_seconds: seconds(heldMs) }),
      });
    } else {
      // Enough nodes to bring the queue down to target, at least one, never past max.
      const wanted = policy.targetQueuePerNode > 0 ? Math.ceil(waitingTotal / policy.targetQueuePerNode) - capacity : 1;
      const count = Math.min(policy.maxNodes - capacity, Math.max(1, wanted));
      decisions.push({
        action: "launch",
        count,
        rule: "queue",
        reason: `Waiting per node ${perNodeText} has been above the target ${policy.targetQueuePerNode} for ${seconds(heldMs)} s (≥ ${policy.scaleUpAfterSeconds} s): launching ${count}.`,
        details: at({ above_for_seconds: seconds(heldMs), count }),
      });
      capacity += count;
      // The new capacity counts from the next run on; the clock starts again if the queue stays.
    }
  }

  // 4. Idle nodes, oldest idle first.
  const idleSince: Record<string, number> = {};
  for (const n of serving) if (isIdle(n)) idleSince[n.id] = memory.idleSince[n.id] ?? now;
  if (!above) {
    const candidates = serving
      .filter((n) => n.launch?.state === "serving" && idleSince[n.id] !== undefined && now - (idleSince[n.id] ?? now) >= policy.idleSeconds * 1000)
      .sort((a, b) => (idleSince[a.id] ?? now) - (idleSince[b.id] ?? now));
    for (const n of candidates) {
      if (capacity <= policy.minNodes) break;
      const idleFor = seconds(now - (idleSince[n.id] ?? now));
      capacity--;
      delete idleSince[n.id];
      decisions.push({
        action: "drain",
        nodeId: n.id,
        rule: "idle",
        reason: `Node ${n.id} has been idle for ${idleFor} s (≥ ${policy.idleSeconds} s) and ${capacity} node${capacity === 1 ? "" : "s"} stay (minimum ${policy.minNodes}): draining it, then terminating it once drained.`,
        details: at({ node_id: n.id, idle_for_seconds: idleFor, launch_id: n.launch?.id ?? null }),
      });
    }
  }

  // 5. Otherwise hold.
  if (decisions.length === 0) {
    const idleText = Object.keys(idleSince).length === 0 ? "no node idle" : `${Object.keys(idleSince).length} idle (longest ${seconds(now - Math.min(...Object.values(idleSince)))} s of ${policy.idleSeconds} s)`;
    decisions.push({
      action: "hold",
      rule: "steady",
      reason: `${figures.serving} serving, ${figures.on_the_way} on the way (min ${policy.minNodes}, max ${policy.maxNodes}); waiting per node ${figures.waiting_per_node ?? 0} within the target ${policy.targetQueuePerNode}; ${idleText}.`,
      details: at({ idle_nodes: Object.keys(idleSince).length }),
    });
  }
  return { decisions, memory: { queueAboveSince, idleSince }, figures };
}

/** The decision when the live node state (Redis) cannot be read: no rule can be applied safely. */
export function holdWithoutLiveState(policy: Policy, error: string): Decision {
  return {
    action: "hold",
    rule: "no_live_state",
    reason: `The nodes' live state (Redis) could not be read (${error}): holding, since the queue and the serving nodes are unknown.`,
    details: { min_nodes: policy.minNodes, max_nodes: policy.maxNodes },
  };
}
