/**
 * Provisioning admin routes (operator only), mounted at `/admin/nodes` before the node routes (whose
 * `/:id` would take `launch` and `launches` for node ids). A Worker cannot run `sky`: the gateway
 * records launches and hands out their SkyPilot task, and the provisioner on the operator's control
 * host (`npm run admin -- provisioner run`) claims them, runs `sky launch` / `sky down` and reports
 * back here (docs/provisioning.md).
 *
 * The task YAML carries the node's signing secret (derived from NODE_SIGNING_SECRET, never stored):
 * it is only in the answers of `POST /launch` and of a claim, never in lists, logs or audit rows.
 */
import { and, desc, eq, type SQL } from "drizzle-orm";
import { Hono } from "hono";
import { z } from "zod";
import { deriveNodeSecret } from "../../../schema/contracts/signing.ts";
import { LAUNCH_STATES, nodeLaunches } from "../../../schema/tables/index.ts";
import { ApiError } from "../errors.ts";
import { actorName, type AdminEnv } from "../admin/auth.ts";
import { inTransaction, readJson, readQuery, reading, requireOperator, type AdminContext } from "../admin/http.ts";
import { recordAudit } from "../admin/store.ts";
import { dropRoutingSnapshot } from "../nodes/admin-state.ts";
import { checkLaunchModel, claimLaunch, launchFields, newLaunchNodeId, launchJson, loadLaunch, requestLaunch, requestTerminate, transition, type LaunchRow, type LaunchState } from "./launches.ts";
import { skyTask, taskYaml } from "./task.ts";

const WHAT = "launch and terminate GPU nodes";
const LAUNCH_ID = /^lnc_[0-9a-f]{20}$/;
const NODE_ID = /^[a-z0-9][a-z0-9._-]{0,62}$/;
/** Shown with every launch answer: the gateway cannot run sky itself. */
export const CONTROL_HOST_MESSAGE =
  "SkyPilot runs on the operator's control host, not in the gateway: there, `npm run admin -- provisioner run` launches pending nodes with `sky launch` (or `npm run admin -- node launch …` launches at once). Each node's task YAML is included; it holds the node's signing secret under `secrets`: keep it private.";

const launchBody = z.strictObject({ ...launchFields, dry_run: z.boolean().default(false) });

/** Stands in for the secret in a dry run's YAML: no node will use it, so none is derived. */
export const DRY_RUN_SECRET = "(derived from NODE_SIGNING_SECRET when the node is launched)";

const listQuery = z.strictObject({
  state: z.enum(LAUNCH_STATES).optional(),
  model: z.string().min(1).optional(),
  region: z.string().min(1).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(100),
});

/** What the provisioner may report: the cluster is up, it failed, the teardown failed (retry), the teardown is done. */
const REPORTS = ["registering", "failed", "terminating", "terminated"] as const;
const stateBody = z.strictObject({
  state: z.enum(REPORTS),
  error: z.string().max(4000).nullable().optional(),
});

const terminateBody = z.strictObject({ reason: z.string().min(1).max(200).default("manual") });

/** The states a report may come from. */
const REPORT_FROM: Record<(typeof REPORTS)[number], readonly LaunchState[]> = {
  registering: ["launching"],
  failed: ["launching", "registering"],
  terminating: ["terminating"],
  terminated: ["terminating"],
};

function launchId(c: AdminContext): string {
  requireOperator(c.get("actor"), WHAT);
  const id = c.req.param("id") ?? "";
  if (!LAUNCH_ID.test(id)) throw new ApiError("not_found", `No node launch with id ${id}.`);
  return id;
}

/** The gateway URL nodes send heartbeats to: the one the caller reached (the admin API and the node API share a host). */
function gatewayUrl(c: AdminContext): string {
  return new URL(c.req.url).origin;
}

/** A launch with its task YAML (secret included: only for the operator's launch and claim answers). */
async function withTask(c: AdminContext, row: LaunchRow): Promise<ReturnType<typeof launchJson> & { task_yaml: string }> {
  const master = c.get("deps").secrets.nodeSigning;
  if (!master) throw new ApiError("not_configured", "NODE_SIGNING_SECRET is not set, so no node secret can be derived: set it (wrangler secret put NODE_SIGNING_SECRET) before launching nodes.");
  const nodeSecret = await deriveNodeSecret(master, row.nodeId, 1);
  return { ...launchJson(row), task_yaml: taskYaml(skyTask(row, { gatewayUrl: gatewayUrl(c), nodeSecret })) };
}

/** The provisioning routes, mounted at `/admin/nodes` before the node routes. */
export const provisioningRoutes = new Hono<AdminEnv>()
  .post("/launch", async (c) => {
    requireOperator(c.get("actor"), WHAT);
    const body = await readJson(c, launchBody);
    const actor = actorName(c.get("actor"));
    if (body.dry_run) {
      // The tasks it would launch, with fresh node ids that are never used: nothing is written.
      await reading(c, (db) => checkLaunchModel(db, body.model));
      const data = Array.from({ length: body.count }, () => {
        const nodeId = newLaunchNodeId(body.region);
        const launch = { nodeId, cluster: nodeId, provider: body.provider, region: body.region, model: body.model, gpu: body.gpu, spot: body.spot };
        return { node_id: nodeId, cluster: nodeId, task_yaml: taskYaml(skyTask(launch, { gatewayUrl: gatewayUrl(c), nodeSecret: DRY_RUN_SECRET })) };
      });
      return c.json({ object: "list", dry_run: true, data, message: "Dry run: nothing was launched." });
    }
    const rows = await inTransaction(c, (db) =>
      requestLaunch(db, { provider: body.provider, region: body.region, model: body.model, gpu: body.gpu, spot: body.spot, reason: "manual", requestedBy: actor }, body.count),
    );
    const data = await Promise.all(rows.map((r) => withTask(c, r)));
    return c.json({ object: "list", data, message: CONTROL_HOST_MESSAGE }, 201);
  })
  .get("/launches", async (c) => {
    requireOperator(c.get("actor"), WHAT);
    const q = readQuery(c, listQuery);
    const where: SQL[] = [];
    if (q.state) where.push(eq(nodeLaunches.state, q.state));
    if (q.model) where.push(eq(nodeLaunches.model, q.model));
    if (q.region) where.push(eq(nodeLaunches.region, q.region));
    const rows = await reading(c, (db) =>
      db.select().from(nodeLaunches).where(and(...where)).orderBy(desc(nodeLaunches.createdAt), desc(nodeLaunches.id)).limit(q.limit),
    );
    return c.json({ object: "list", data: rows.map(launchJson) });
  })
  .get("/launches/:id", async (c) => {
    const id = launchId(c);
    return c.json(launchJson(await reading(c, (db) => loadLaunch(db, id))));
  })
  .post("/launches/:id/claim", async (c) => {
    const id = launchId(c);
    const actor = actorName(c.get("actor"));
    const row = await inTransaction(c, async (db) => {
      const before = await loadLaunch(db, id);
      const claimed = await claimLaunch(db, id);
      if (!claimed) {
        throw new ApiError("conflict", `Launch ${id} is ${before.state}${before.state === "terminating" ? " and its teardown is already claimed" : ""}: only a pending launch (or a terminating one nobody tears down) can be claimed.`);
      }
      await recordAudit(db, actor, claimed.state === "launching" ? "node.launch.claim" : "node.terminate.claim", "node", claimed.nodeId, null, { launch_id: id, state: claimed.state });
      return claimed;
    });
    return c.json(await withTask(c, row));
  })
  .post("/launches/:id/state", async (c) => {
    const id = launchId(c);
    const body = await readJson(c, stateBody);
    const actor = actorName(c.get("actor"));
    if (body.state === "failed" && !body.error) throw new ApiError("invalid_value", "A failed launch needs its error (what sky said).", { param: "error" });
    const row = await inTransaction(c, async (db) => {
      const before = await loadLaunch(db, id);
      // Only a failure sets the launch's error; a failed teardown (reported as terminating, to be
      // retried) is audited but leaves it alone, so the launch still ends terminated, not failed.
      const error = body.state === "failed" ? body.error : body.state === "registering" ? null : undefined;
      const after = await transition(db, id, REPORT_FROM[body.state], body.state, error);
      if (!after) throw new ApiError("conflict", `Launch ${id} is ${before.state}: it cannot become ${body.state}.`, { param: "state" });
      await recordAudit(db, actor, `node.launch.${after.state}`, "node", after.nodeId, null, {
        launch_id: id,
        before: { state: before.state },
        after: { state: after.state, error: after.error },
        reported: { state: body.state, error: body.error ?? null },
      });
      return after;
    });
    return c.json(launchJson(row));
  })
  .post("/:id/terminate", async (c) => {
    requireOperator(c.get("actor"), WHAT);
    const nodeId = c.req.param("id");
    if (!NODE_ID.test(nodeId)) throw new ApiError("not_found", `No node with id ${nodeId}.`);
    const body = await readJson(c, terminateBody);
    const result = await inTransaction(c, (db) => requestTerminate(db, nodeId, body.reason, actorName(c.get("actor"))));
    if (result.nodeDrained) await dropRoutingSnapshot(c);
    return c.json(launchJson(result.launch), 202);
  });
