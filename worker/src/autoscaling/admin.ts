/**
 * `/admin/autoscaling` (operator only; docs/autoscaling.md): the policies per model and region,
 * their last decisions and what each would do now (decide() on the current state, nothing done);
 * `PUT /:model/:region` creates or changes one, `DELETE` removes it (both audited). A model id with
 * a slash is sent percent-encoded (`meta-llama%2FLlama-3.1-8B`).
 */
import { and, desc, eq } from "drizzle-orm";
import { Hono } from "hono";
import { z } from "zod";
import { autoscalingDecisions, autoscalingPolicies, models } from "../../../schema/tables/index.ts";
import { actorName, type AdminEnv } from "../admin/auth.ts";
import { inTransaction, notFound, readJson, reading, requireOperator, type AdminContext } from "../admin/http.ts";
import { recordAudit, type AdminDb } from "../admin/store.ts";
import { ApiError } from "../errors.ts";
import { LIVE_UNAVAILABLE_HEADER } from "../nodes/admin-state.ts";
import { liveNodesKey, type LiveNode } from "../nodes/live.ts";
import { GPU, PROVIDER, REGION } from "../provisioning/launches.ts";
import { decide, EMPTY_MEMORY, holdWithoutLiveState, type Policy, type ScalingMemory } from "./decide.ts";
import { memoryKey, readMemories } from "./memory.ts";
import { loadFleet, viewOf, type Fleet } from "./view.ts";
import { decisionJson, policyJson, wouldDoJson, type PolicyStatusJson } from "./wire.ts";

const WHAT = "manage autoscaling";
/** Decisions shown per policy. */
const LAST_DECISIONS = 10;
/** Bounds of a policy's figures: a day of sustain, a week of idle, 100 nodes per model and region. */
const MAX_NODES = 100;

const putBody = z
  .strictObject({
    min_nodes: z.number().int().min(0).max(MAX_NODES).optional(),
    max_nodes: z.number().int().min(1).max(MAX_NODES).optional(),
    target_queue_per_node: z.number().min(0).max(10_000).optional(),
    scale_up_after_seconds: z.number().int().min(0).max(86_400).optional(),
    idle_seconds: z.number().int().min(0).max(7 * 86_400).optional(),
    provider: z.string().regex(PROVIDER, "a SkyPilot cloud name in lower case, e.g. aws, gcp, azure").optional(),
    gpu: z.string().regex(GPU, "a SkyPilot accelerator name, e.g. A10G, L4, A100").optional(),
    spot: z.boolean().optional(),
    mode: z.enum(["dry_run", "on"]).optional(),
  });

/** The model and region of the path, decoded and checked. */
function policyKey(c: AdminContext): { model: string; region: string } {
  const model = decodeURIComponent(c.req.param("model") ?? "");
  const region = decodeURIComponent(c.req.param("region") ?? "");
  if (model === "" || model.length > 200) throw new ApiError("invalid_value", "The model in the path must be a catalogue model id (percent-encode a '/').", { param: "model" });
  if (!REGION.test(region)) throw new ApiError("invalid_value", "The region in the path must be a cloud region in lower case, e.g. us-east-1.", { param: "region" });
  return { model, region };
}

/** The live node state and the policies' memories, or null with the header set when Redis cannot be read. */
async function readLive(c: AdminContext, policies: Policy[]): Promise<{ live: Record<string, LiveNode>; memories: ScalingMemory[] } | null> {
  const { redis, settings } = c.get("deps");
  try {
    const [live, memories] = await Promise.all([redis.hgetall<Record<string, LiveNode>>(liveNodesKey(settings.redisPrefix)), readMemories(redis, settings.redisPrefix, policies)]);
    return { live: live ?? {}, memories };
  } catch (err) {
    c.get("deps").log("admin_live_state_unavailable", { requestId: c.get("deps").requestId, error: String(err) });
    c.header(LIVE_UNAVAILABLE_HEADER, "unavailable");
    return null;
  }
}

/** Each policy with its last decisions and what it would do now. */
async function statuses(c: AdminContext, only?: { model: string; region: string }): Promise<PolicyStatusJson[]> {
  const now = Date.now();
  const { fleet, recent } = await reading(c, async (db) => {
    const fleet = await loadFleet(db, now, only);
    const recent = [];
    for (const p of fleet.policies) {
      recent.push(
        await db
          .select()
          .from(autoscalingDecisions)
          .where(and(eq(autoscalingDecisions.model, p.model), eq(autoscalingDecisions.region, p.region)))
          .orderBy(desc(autoscalingDecisions.at))
          .limit(LAST_DECISIONS),
      );
    }
    return { fleet, recent };
  });
  const state = fleet.policies.length === 0 ? { live: {}, memories: [] } : await readLive(c, fleet.policies);
  return fleet.policies.map((p, i) => ({ ...policyJson(p), last_decisions: (recent[i] ?? []).map(decisionJson), now: wouldDo(p, fleet, state, i, now) }));
}

function wouldDo(p: Policy, fleet: Fleet, state: { live: Record<string, LiveNode>; memories: ScalingMemory[] } | null, i: number, now: number): PolicyStatusJson["now"] {
  if (state === null) return wouldDoJson([holdWithoutLiveState(p, "unavailable")], null);
  const result = decide(p, viewOf(p, fleet, state.live, now), state.memories[i] ?? EMPTY_MEMORY, now);
  return wouldDoJson(result.decisions, result.figures);
}

/** Refuses a model the provisioner could not launch (not in the catalogue, inactive, or an adapter). */
async function checkModel(db: AdminDb, model: string): Promise<void> {
  const [row] = await db.select({ active: models.active, baseModel: models.baseModel }).from(models).where(eq(models.id, model));
  if (!row || !row.active) throw new ApiError("invalid_value", `Model ${model} is not an active model of the catalogue: add it first (PUT /admin/models/:id).`, { param: "model" });
  if (row.baseModel !== null) throw new ApiError("invalid_value", `Model ${model} is a LoRA adapter: scale its base model ${row.baseModel} instead.`, { param: "model" });
}

/** The autoscaling routes, mounted at `/admin/autoscaling`. */
export const autoscalingRoutes = new Hono<AdminEnv>()
  .get("/", async (c) => {
    requireOperator(c.get("actor"), WHAT);
    return c.json({ object: "list", data: await statuses(c), next_cursor: null });
  })
  .get("/:model/:region", async (c) => {
    requireOperator(c.get("actor"), WHAT);
    const key = policyKey(c);
    const [status] = await statuses(c, key);
    if (!status) throw notFound("autoscaling policy", `${key.model}/${key.region}`);
    return c.json(status);
  })
  .put("/:model/:region", async (c) => {
    requireOperator(c.get("actor"), WHAT);
    const { model, region } = policyKey(c);
    const body = await readJson(c, putBody);
    const { row, created } = await inTransaction(c, async (db) => {
      const [before] = await db.select().from(autoscalingPolicies).where(and(eq(autoscalingPolicies.model, model), eq(autoscalingPolicies.region, region))).for("update");
      if (!before) {
        for (const field of ["max_nodes", "target_queue_per_node", "provider", "gpu"] as const) {
          if (body[field] === undefined) throw new ApiError("invalid_value", `A new policy needs ${field}.`, { param: field });
        }
      }
      await checkModel(db, model);
      const values = {
        model,
        region,
        minNodes: body.min_nodes ?? before?.minNodes ?? 0,
        maxNodes: body.max_nodes ?? before?.maxNodes ?? 0,
        targetQueuePerNode: body.target_queue_per_node ?? before?.targetQueuePerNode ?? 0,
        scaleUpAfterSeconds: body.scale_up_after_seconds ?? before?.scaleUpAfterSeconds ?? 120,
        idleSeconds: body.idle_seconds ?? before?.idleSeconds ?? 900,
        provider: body.provider ?? before?.provider ?? "",
        gpu: body.gpu ?? before?.gpu ?? "",
        spot: body.spot ?? before?.spot ?? false,
        mode: body.mode ?? before?.mode ?? "dry_run",
        updatedAt: new Date(),
      };
      if (values.minNodes > values.maxNodes) {
        const param = body.min_nodes !== undefined ? "min_nodes" : "max_nodes";
        throw new ApiError("invalid_value", `min_nodes (${values.minNodes}) must not exceed max_nodes (${values.maxNodes}).`, { param });
      }
      const [after] = await db
        .insert(autoscalingPolicies)
        .values(values)
        .onConflictDoUpdate({ target: [autoscalingPolicies.model, autoscalingPolicies.region], set: values })
        .returning();
      if (!after) throw new Error("autoscaling policy upsert returned no row");
      await recordAudit(db, actorName(c.get("actor")), before ? "autoscaling.policy.update" : "autoscaling.policy.create", "autoscaling_policy", `${model}/${region}`, null, {
        before: before ? policyJson(before) : null,
        after: policyJson(after),
      });
      return { row: after, created: !before };
    });
    return c.json(policyJson(row), created ? 201 : 200);
  })
  .delete("/:model/:region", async (c) => {
    requireOperator(c.get("actor"), WHAT);
    const { model, region } = policyKey(c);
    const row = await inTransaction(c, async (db) => {
      const [before] = await db.delete(autoscalingPolicies).where(and(eq(autoscalingPolicies.model, model), eq(autoscalingPolicies.region, region))).returning();
      if (!before) throw notFound("autoscaling policy", `${model}/${region}`);
      await recordAudit(db, actorName(c.get("actor")), "autoscaling.policy.delete", "autoscaling_policy", `${model}/${region}`, null, { before: policyJson(before) });
      return before;
    });
    // Its clocks go with it (they would expire anyway, memory.ts); its decisions stay for the record.
    const { redis, settings } = c.get("deps");
    await redis.del(memoryKey(settings.redisPrefix, model, region)).catch((err: unknown) => c.get("deps").log("autoscaling_memory_delete_failed", { error: String(err) }));
    return c.json({ ...policyJson(row), deleted: true });
  });
