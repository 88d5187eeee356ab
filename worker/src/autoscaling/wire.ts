/** How the admin API shows autoscaling policies and decisions (shared with the CLI). */
import type { Decision, Figures, Policy } from "./decide.ts";
import type { autoscalingDecisions } from "../../../schema/tables/index.ts";

type DecisionRow = typeof autoscalingDecisions.$inferSelect;

/** A policy as the admin API shows it. */
export interface PolicyJson {
  object: "autoscaling_policy";
  model: string;
  region: string;
  min_nodes: number;
  max_nodes: number;
  target_queue_per_node: number;
  scale_up_after_seconds: number;
  idle_seconds: number;
  provider: string;
  gpu: string;
  spot: boolean;
  mode: "dry_run" | "on";
  updated_at: string;
}

/** A recorded decision. */
export interface DecisionJson {
  object: "autoscaling_decision";
  id: string;
  at: string;
  action: DecisionRow["action"];
  reason: string;
  node_id: string | null;
  launch_id: string | null;
  dry_run: boolean;
  details: Record<string, unknown>;
}

/** What the policy would decide now (nothing is done). */
export interface WouldDoJson {
  decisions: { action: Decision["action"]; rule: string; reason: string; node_id: string | null; count: number | null; details: Record<string, unknown> }[];
  figures: Figures | null;
}

/** A policy with its last decisions and what it would do now (`GET /admin/autoscaling`). */
export interface PolicyStatusJson extends PolicyJson {
  last_decisions: DecisionJson[];
  now: WouldDoJson;
}

/** Presents a policy. */
export function policyJson(p: Policy): PolicyJson {
  return {
    object: "autoscaling_policy",
    model: p.model,
    region: p.region,
    min_nodes: p.minNodes,
    max_nodes: p.maxNodes,
    target_queue_per_node: p.targetQueuePerNode,
    scale_up_after_seconds: p.scaleUpAfterSeconds,
    idle_seconds: p.idleSeconds,
    provider: p.provider,
    gpu: p.gpu,
    spot: p.spot,
    mode: p.mode,
    updated_at: p.updatedAt.toISOString(),
  };
}

/** Presents a recorded decision. */
export function decisionJson(d: DecisionRow): DecisionJson {
  return { object: "autoscaling_decision", id: d.id, at: d.at.toISOString(), action: d.action, reason: d.reason, node_id: d.nodeId, launch_id: d.launchId, dry_run: d.dryRun, details: d.details };
}

/** Presents decide()'s answer. */
export function wouldDoJson(decisions: Decision[], figures: Figures | null): WouldDoJson {
  return {
    decisions: decisions.map((d) => ({
      action: d.action,
      rule: d.rule,
      reason: d.reason,
      node_id: "nodeId" in d ? d.nodeId : null,
      count: d.action === "launch" ? d.count : d.action === "replace" ? 1 : null,
      details: d.details,
    })),
    figures,
  };
}
