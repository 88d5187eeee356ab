/**
 * SkyPilot-launched nodes (docs/provisioning.md): asking for launches and terminations, and the
 * state machine of a `node_launches` row (schema/tables/provisioning.ts):
 *
 *   pending → launching → registering → serving → draining → terminating → terminated
 *
 * `pending` rows wait for the control host's provisioner (worker/cli/provisioner.ts), which claims
 * them (→ launching) and runs `sky launch`; it reports `registering` when the cluster is up, or
 * `failed` (after tearing down what sky left). The scheduled job (lifecycle.ts) moves `registering`
 * to `serving` on the node's first ready heartbeat and `draining` to `terminating` once nothing is in
 * flight; the provisioner claims `terminating` rows, runs `sky down`, and reports `terminated` (kept
 * as `failed` when the launch carries an error: it was torn down because it failed).
 *
 * Works with any drizzle Postgres driver (the admin API and the scheduled job both call it). Nothing
 * here touches Redis: a caller that drains a node must drop the routing snapshot after the commit
 * (nodes/admin-state.ts `dropRoutingSnapshot`, or `routingCacheKey` outside a request).
 */
import { and, eq, inArray, isNull, lt, or, sql } from "drizzle-orm";
import { z } from "zod";
import { LAUNCH_STATES, models, nodeLaunches, nodes } from "../../../schema/tables/index.ts";
import { ApiError } from "../errors.ts";
import { newId, recordAudit, type AdminDb } from "../admin/store.ts";

/** A `node_launches` row. */
export type LaunchRow = typeof nodeLaunches.$inferSelect;
/** A launch state. */
export type LaunchState = (typeof LAUNCH_STATES)[number];

/** Most nodes one launch request may ask for. */
export const MAX_LAUNCH_COUNT = 16;

/** What to launch (`count` is passed apart). */
export interface LaunchInput {
  /** SkyPilot cloud: aws, gcp, azure, lambda, … */
  provider: string;
  /** The cloud's region; also the gateway region the node registers in. */
  region: string;
  /** A catalogue model id (vLLM serves it under that name). */
  model: string;
  /** SkyPilot accelerator name: A10G, L4, A100, A100-80GB, H100, … */
  gpu: string;
  spot: boolean;
  /** `manual`, or the autoscaler's reason. */
  reason: string;
  /** Audit actor name, or `autoscaler`. */
  requestedBy: string;
  /** The spot node this one replaces. */
  replacesNodeId?: string | null;
}

/** Field shapes shared by the admin API and the CLI (clouds, regions and accelerators as SkyPilot spells them). */
export const PROVIDER = /^[a-z][a-z0-9-]{1,23}$/;
export const REGION = /^[a-z][a-z0-9-]{1,39}$/;
export const GPU = /^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/;

/** The launch fields as zod checks them (the admin API's body; the CLI's flags). */
export const launchFields = {
  provider: z.string().regex(PROVIDER, "a SkyPilot cloud name in lower case, e.g. aws, gcp, azure"),
  region: z.string().regex(REGION, "a cloud region in lower case, e.g. us-east-1"),
  model: z.string().min(1).max(200),
  gpu: z.string().regex(GPU, "a SkyPilot accelerator name, e.g. A10G, L4, A100"),
  count: z.number().int().min(1).max(MAX_LAUNCH_COUNT).default(1),
  spot: z.boolean().default(false),
};

/**
 * How long a node may take from `registering` (the cluster is up, setup and run started: pip
 * install of vLLM, the model download, vLLM's start) to its first ready heartbeat before the launch
 * is failed and torn down.
 */
export const REGISTRATION_DEADLINE_MS = 30 * 60_000;
/** How long a draining node may keep requests in flight before it is torn down anyway. */
export const DRAIN_DEADLINE_MS = 10 * 60_000;
/**
 * How long a provisioner may hold a claim (`launching`, or a `terminating` row it runs `sky down`
 * for) without reporting: past it the provisioner is taken for dead. A launching row is then torn
 * down (the cluster may be half up); a terminating claim is released for another try. Longer than
 * the provisioner's own `sky launch` timeout (worker/cli/sky.ts).
 */
export const CLAIM_LEASE_MS = 50 * 60_000;

/** Which states may follow which (the provisioner's reports and the scheduled job both go through it). */
export const TRANSITIONS: Record<LaunchState, readonly LaunchState[]> = {
  pending: ["launching", "terminated", "failed"],
  launching: ["registering", "failed", "draining", "terminating"],
  registering: ["serving", "draining", "terminating", "failed"],
  serving: ["draining", "terminating"],
  draining: ["terminating"],
  terminating: ["terminating", "terminated"],
  terminated: [],
  failed: [],
};

/** States in which a cloud cluster may exist (a teardown is still owed). */
export const LIVE_STATES: readonly LaunchState[] = ["launching", "registering", "serving", "draining", "terminating"];

/** A launch as the admin API shows it. */
export interface LaunchJson {
  object: "node_launch";
  id: string;
  node_id: string;
  cluster: string;
  provider: string;
  region: string;
  model: string;
  gpu: string;
  spot: boolean;
  state: LaunchState;
  reason: string;
  requested_by: string;
  replaces_node_id: string | null;
  error: string | null;
  created_at: string;
  updated_at: string;
  serving_at: string | null;
  terminated_at: string | null;
}

/** Presents a launch row. */
export function launchJson(row: LaunchRow): LaunchJson {
  return {
    object: "node_launch",
    id: row.id,
    node_id: row.nodeId,
    cluster: row.cluster,
    provider: row.provider,
    region: row.region,
    model: row.model,
    gpu: row.gpu,
    spot: row.spot,
    state: row.state,
    reason: row.reason,
    requested_by: row.requestedBy,
    replaces_node_id: row.replacesNodeId,
    error: row.error,
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
    serving_at: row.servingAt?.toISOString() ?? null,
    terminated_at: row.state === "terminated" || row.state === "failed" ? (row.terminatedAt?.toISOString() ?? null) : null,
  };
}

function randomHex(bytes: number): string {
  let hex = "";
  for (const b of crypto.getRandomValues(new Uint8Array(bytes))) hex += b.toString(16).padStart(2, "0");
  return hex;
}

/** A fresh node id, `sky-<region>-<8 hex>`; the SkyPilot cluster is named the same, so `sky status` and `/admin/nodes` read alike. */
export function newLaunchNodeId(region: string): string {
  return `sky-${region}-${randomHex(4)}`;
}

/**
 * Inserts `count` pending launches (one node, one cluster each) and audits each as `node.launch`.
 * Refuses a model outside the catalogue (400 naming `model`). Call it in a transaction.
 */
export async function requestLaunch(db: AdminDb, input: LaunchInput, count: number): Promise<LaunchRow[]> {
  if (!Number.isInteger(count) || count < 1 || count > MAX_LAUNCH_COUNT) {
    throw new ApiError("invalid_value", `count must be a whole number from 1 to ${MAX_LAUNCH_COUNT}.`, { param: "count" });
  }
  await checkLaunchModel(db, input.model);
  const rows: LaunchRow[] = [];
  for (let i = 0; i < count; i++) {
    const nodeId = newLaunchNodeId(input.region);
    const [row] = await db
      .insert(nodeLaunches)
      .values({
        id: newId("lnc"),
        nodeId,
        cluster: nodeId,
        provider: input.provider,
        region: input.region,
        model: input.model,
        gpu: input.gpu,
        spot: input.spot,
        reason: input.reason,
        requestedBy: input.requestedBy,
        replacesNodeId: input.replacesNodeId ?? null,
      })
      .returning();
    if (!row) throw new Error("node_launches insert returned no row");
    await recordAudit(db, input.requestedBy, "node.launch", "node", nodeId, null, { after: launchJson(row) });
    rows.push(row);
  }
  return rows;
}

/** Refuses (400 naming `model`) a model that is not an active base model of the catalogue. */
export async function checkLaunchModel(db: AdminDb, modelId: string): Promise<void> {
  const [model] = await db.select({ id: models.id, active: models.active, baseModel: models.baseModel }).from(models).where(eq(models.id, modelId));
  if (!model || !model.active) {
    throw new ApiError("invalid_value", `Model ${modelId} is not an active model of the catalogue: add it first (POST /admin/models), then launch nodes for it.`, { param: "model" });
  }
  if (model.baseModel !== null) {
    throw new ApiError("invalid_value", `Model ${modelId} is a LoRA adapter: launch nodes for its base model ${model.baseModel}.`, { param: "model" });
  }
}

/** One launch by id, or 404. */
export async function loadLaunch(db: AdminDb, id: string): Promise<LaunchRow> {
  const [row] = await db.select().from(nodeLaunches).where(eq(nodeLaunches.id, id));
  if (!row) throw new ApiError("not_found", `No node launch with id ${id}.`);
  return row;
}

/** The launch of a node, or null for a node that was not launched through SkyPilot. */
export async function launchOfNode(db: AdminDb, nodeId: string): Promise<LaunchRow | null> {
  const [row] = await db.select().from(nodeLaunches).where(eq(nodeLaunches.nodeId, nodeId));
  return row ?? null;
}

/** The columns a transition sets besides the state. */
function stamps(to: LaunchState, error: string | null | undefined): Partial<typeof nodeLaunches.$inferInsert> {
  const set: Partial<typeof nodeLaunches.$inferInsert> = { updatedAt: new Date() };
  if (error !== undefined) set.error = error;
  if (to === "serving") set.servingAt = new Date();
  // terminatedAt marks a running teardown claim while terminating (claimTeardown), the end afterwards.
  if (to === "terminating") set.terminatedAt = null;
  if (to === "terminated" || to === "failed") set.terminatedAt = new Date();
  return set;
}

/**
 * Moves a launch from one of `from` to `to` (checked against TRANSITIONS) and returns the new row,
 * or null when another writer moved it first (the update is conditional on the state, so two
 * writers never both win). `error` sets or clears the error; `terminated` is stored as `failed` when
 * the launch carries an error.
 */
export async function transition(db: AdminDb, id: string, from: readonly LaunchState[], to: LaunchState, error?: string | null): Promise<LaunchRow | null> {
  const allowed = from.filter((f) => TRANSITIONS[f].includes(to));
  if (allowed.length === 0) return null;
  const set = stamps(to, error);
  const [row] = await db
    .update(nodeLaunches)
    .set({
      ...set,
      state: to === "terminated" ? sql`case when coalesce(${error ?? null}::text, ${nodeLaunches.error}) is null then 'terminated' else 'failed' end` : to,
    })
    .where(and(eq(nodeLaunches.id, id), inArray(nodeLaunches.state, allowed)))
    .returning();
  return row ?? null;
}

/**
 * The provisioner claims a launch: a pending one becomes `launching` (it then runs `sky launch`), a
 * terminating one gets its teardown claim (`terminated_at` set while terminating; it then runs
 * `sky down`). Atomic: of two provisioners claiming the same launch, one gets the row and the other
 * null. A teardown claim older than CLAIM_LEASE_MS may be taken over.
 */
export async function claimLaunch(db: AdminDb, id: string): Promise<LaunchRow | null> {
  const now = new Date();
  const [row] = await db
    .update(nodeLaunches)
    .set({
      state: sql`case when ${nodeLaunches.state} = 'pending' then 'launching' else ${nodeLaunches.state} end`,
      updatedAt: now,
      terminatedAt: sql`case when ${nodeLaunches.state} = 'terminating' then ${now.toISOString()}::timestamptz else ${nodeLaunches.terminatedAt} end`,
    })
    .where(
      and(
        eq(nodeLaunches.id, id),
        or(
          eq(nodeLaunches.state, "pending"),
          and(eq(nodeLaunches.state, "terminating"), or(isNull(nodeLaunches.terminatedAt), lt(nodeLaunches.terminatedAt, new Date(now.getTime() - CLAIM_LEASE_MS)))),
        ),
      ),
    )
    .returning();
  return row ?? null;
}

/** What `requestTerminate` did. */
export interface TerminateResult {
  launch: LaunchRow;
  /** True when the node's admin status changed to draining: the caller drops the routing snapshot. */
  nodeDrained: boolean;
}

/**
 * Asks for a launched node to go away, audited as `node.terminate`: a pending launch (no cluster
 * yet) is terminated at once; a launching, registering or serving one is drained (the node's admin
 * status too, so it gets no new requests) and torn down by the provisioner once nothing is in flight
 * or after DRAIN_DEADLINE_MS (lifecycle.ts). Draining or terminating already: nothing changes.
 * 404 for a node with no launch (stop it by hand), 409 when already terminated or failed.
 * Call it in a transaction.
 */
export async function requestTerminate(db: AdminDb, nodeId: string, reason: string, actor: string): Promise<TerminateResult> {
  const [before] = await db.select().from(nodeLaunches).where(eq(nodeLaunches.nodeId, nodeId)).for("update");
  if (!before) {
    throw new ApiError(
      "not_found",
      `Node ${nodeId} was not launched through SkyPilot: drain it (POST /admin/nodes/${nodeId}/drain), stop its backplane yourself, then remove it (DELETE /admin/nodes/${nodeId}).`,
    );
  }
  if (before.state === "terminated" || before.state === "failed") {
    throw new ApiError("conflict", `Node ${nodeId} is already ${before.state}.`);
  }
  if (before.state === "draining" || before.state === "terminating") return { launch: before, nodeDrained: false };
  const to: LaunchState = before.state === "pending" ? "terminated" : "draining";
  const after = await transition(db, before.id, [before.state], to);
  if (!after) throw new ApiError("conflict", `Node ${nodeId}'s launch changed meanwhile; try again.`);
  let nodeDrained = false;
  if (to === "draining") {
    const drained = await db.update(nodes).set({ status: "draining" }).where(and(eq(nodes.id, nodeId), eq(nodes.status, "active"))).returning({ id: nodes.id });
    nodeDrained = drained.length > 0;
  }
  await recordAudit(db, actor, "node.terminate", "node", nodeId, null, { reason, before: { state: before.state }, after: launchJson(after), node_drained: nodeDrained });
  return { launch: after, nodeDrained };
}
