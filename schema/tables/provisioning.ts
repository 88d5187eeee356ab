import { boolean, index, integer, jsonb, pgTable, primaryKey, real, text, timestamp } from "drizzle-orm/pg-core";

/** States of a launched node, in order (draining and terminating may also follow a failure). */
export const LAUNCH_STATES = ["pending", "launching", "registering", "serving", "draining", "terminating", "terminated", "failed"] as const;

/**
 * A GPU node launched through SkyPilot (worker/src/provisioning/): one row per node, one SkyPilot
 * cluster each. `pending` until the control host's provisioner picks it up and runs `sky launch`;
 * `launching` while that runs; `registering` once the cluster is up and until the node's first ready
 * heartbeat; `serving`; `draining` and `terminating` (`sky down`) on the way out; `terminated`, or
 * `failed` with `error`. The node's signing secret is never stored: it is derived like every node's.
 */
export const nodeLaunches = pgTable(
  "node_launches",
  {
    /** `lnc_…` */
    id: text("id").primaryKey(),
    /** The node id the backplane registers with (`sky-<region>-<hex>`). */
    nodeId: text("node_id").notNull().unique(),
    /** The SkyPilot cluster name. */
    cluster: text("cluster").notNull(),
    /** SkyPilot's cloud: aws, gcp, azure, … */
    provider: text("provider").notNull(),
    /** The cloud's region (us-east-1); also the gateway region id the node registers in. */
    region: text("region").notNull(),
    model: text("model").notNull(),
    /** SkyPilot accelerator name (A10G, L4, A100, H100, …). */
    gpu: text("gpu").notNull(),
    spot: boolean("spot").notNull().default(false),
    state: text("state", { enum: LAUNCH_STATES }).notNull().default("pending"),
    /** Why: `manual`, or the autoscaler's reason. */
    reason: text("reason").notNull(),
    /** Who asked (audit actor name, or `autoscaler`). */
    requestedBy: text("requested_by").notNull(),
    /** The spot node this one replaces, if any. */
    replacesNodeId: text("replaces_node_id"),
    error: text("error"),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
    /** When the state last changed to serving / terminated. */
    servingAt: timestamp("serving_at", { withTimezone: true }),
    terminatedAt: timestamp("terminated_at", { withTimezone: true }),
  },
  (t) => [index("node_launches_state_idx").on(t.state), index("node_launches_model_region_idx").on(t.model, t.region)],
);

/**
 * Autoscaling per model and region (worker/src/autoscaling/): node count bounds, the waiting
 * requests per node to hold (vLLM's num_requests_waiting from heartbeats), how long the queue must
 * stay above it before a launch, and how long a node must idle before it is drained and terminated.
 * `dry_run` (the default) records what it would do and does nothing.
 */
export const autoscalingPolicies = pgTable(
  "autoscaling_policies",
  {
    model: text("model").notNull(),
    region: text("region").notNull(),
    minNodes: integer("min_nodes").notNull().default(0),
    maxNodes: integer("max_nodes").notNull(),
    targetQueuePerNode: real("target_queue_per_node").notNull(),
    scaleUpAfterSeconds: integer("scale_up_after_seconds").notNull().default(120),
    idleSeconds: integer("idle_seconds").notNull().default(900),
    /** What to launch: SkyPilot cloud, accelerator, spot. */
    provider: text("provider").notNull(),
    gpu: text("gpu").notNull(),
    spot: boolean("spot").notNull().default(false),
    mode: text("mode", { enum: ["dry_run", "on"] }).notNull().default("dry_run"),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.model, t.region] })],
);

/** What the autoscaler decided, with its reason (also audited when it acted). */
export const autoscalingDecisions = pgTable(
  "autoscaling_decisions",
  {
    id: text("id").primaryKey(),
    at: timestamp("at", { withTimezone: true }).notNull().defaultNow(),
    model: text("model").notNull(),
    region: text("region").notNull(),
    action: text("action", { enum: ["launch", "drain", "terminate", "replace", "hold"] }).notNull(),
    reason: text("reason").notNull(),
    nodeId: text("node_id"),
    launchId: text("launch_id"),
    /** True when the policy was in dry run: recorded, not done. */
    dryRun: boolean("dry_run").notNull(),
    /** The numbers it decided on (nodes, waiting per node, idle times). */
    details: jsonb("details").$type<Record<string, unknown>>().notNull().default({}),
  },
  (t) => [index("autoscaling_decisions_at_idx").on(t.model, t.region, t.at)],
);
