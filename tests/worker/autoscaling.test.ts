/**
 * The autoscaling job (worker/src/autoscaling/job.ts) against the real Postgres and Redis, with
 * nodes that heartbeat through the gateway: dry run records, `on` acts through provisioning; and
 * the operator's /admin/autoscaling routes.
 */
import { env } from "cloudflare:test";
import { and, asc, eq, inArray } from "drizzle-orm";
import { afterEach, describe, expect, it } from "vitest";
import { SPOT_PATH } from "../../schema/contracts/heartbeat.ts";
import { auditLogs, autoscalingDecisions, nodeLaunches, nodes } from "../../schema/tables/index.ts";
import { runAutoscaling } from "../../worker/src/autoscaling/job.ts";
import type { PolicyJson, PolicyStatusJson } from "../../worker/src/autoscaling/wire.ts";
import { depsFrom } from "../../worker/src/platform/deps.ts";
import { requestLaunch, transition } from "../../worker/src/provisioning/launches.ts";
import { admin, expectStatus, sandbox, type ErrorBody, type List } from "./admin-helpers.ts";
import { beat, freshId, sendHeartbeat, signedNodeRequest } from "./fleet-helpers.ts";
import { eventually, query } from "./helpers.ts";

const DEAD_URL = "http://127.0.0.1:9";
const S = 1000;

/**
 * The job's dependencies, as the scheduled handler builds them (its log lines kept), and `run`, one
 * run of the job at `now`: tried again while the scheduled job of another test file holds the run lock.
 */
function jobDeps() {
  const pending: Promise<unknown>[] = [];
  const lines: { event: string; fields: Record<string, unknown> }[] = [];
  const deps = depsFrom(env, (p) => pending.push(p), (event, fields) => lines.push({ event, fields }));
  const run = async (now?: number) => {
    for (let attempt = 0; ; attempt++) {
      const before = lines.length;
      const runs = await runAutoscaling(deps, now);
      if (!lines.slice(before).some((l) => l.event === "autoscaling_skipped") || attempt > 50) return runs;
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  return { deps, lines, run };
}

const created: { models: string[]; policies: string[] } = { models: [], policies: [] };

/** A fresh catalogue model and region (deactivated, with its policy and nodes removed, after the test). */
async function fresh(): Promise<{ model: string; region: string }> {
  const model = freshId("as-model");
  expectStatus(await admin("PUT", `/models/${model}`, { context_length: 4096 }), 201);
  const region = freshId("as-region");
  created.models.push(model);
  created.policies.push(`${model}/${region}`);
  return { model, region };
}

// Later test files share this database and the cron job: no policy, node or model of these tests
// may outlive them (a policy "on" would keep launching; a model would show in every key's list).
afterEach(async () => {
  for (const p of created.policies.splice(0)) await admin("DELETE", `/autoscaling/${p}`);
  const models = created.models.splice(0);
  if (models.length === 0) return;
  const rows = await query((db) => db.select({ id: nodes.id, models: nodes.models }).from(nodes));
  for (const n of rows) if (n.models.some((m) => models.includes(m))) await admin("DELETE", `/nodes/${n.id}`);
  await query((db) => db.update(nodeLaunches).set({ state: "terminated" }).where(inArray(nodeLaunches.model, models)));
  for (const m of models) await admin("DELETE", `/models/${m}`);
});

/** Creates a policy through the API. */
async function setPolicy(model: string, region: string, body: Record<string, unknown>): Promise<PolicyJson> {
  const res = await admin<PolicyJson>("PUT", `/autoscaling/${model}/${region}`, { provider: "aws", gpu: "A10G", ...body });
  expect([200, 201]).toContain(res.status);
  return res.body;
}

/** A node of `model` in `region` heartbeating through the gateway (long interval: the job's clock runs ahead). */
async function heartbeat(nodeId: string, model: string, region: string, load: { waiting?: number; inFlight?: number; running?: number }): Promise<void> {
  await sendHeartbeat(beat(nodeId, { region, url: DEAD_URL, models: [model], intervalMs: 600_000 }, { waiting: 0, inFlight: 0, running: 0, ...load }));
  await eventually(() => query(async (db) => (await db.select().from(nodes).where(eq(nodes.id, nodeId)))[0]));
}

function decisionsOf(model: string, region: string) {
  return query((db) =>
    db.select().from(autoscalingDecisions).where(and(eq(autoscalingDecisions.model, model), eq(autoscalingDecisions.region, region))).orderBy(asc(autoscalingDecisions.at)),
  );
}

function launchesOf(model: string, region: string) {
  return query((db) => db.select().from(nodeLaunches).where(and(eq(nodeLaunches.model, model), eq(nodeLaunches.region, region))).orderBy(asc(nodeLaunches.createdAt)));
}

function auditOf(targetId: string) {
  return query((db) => db.select().from(auditLogs).where(eq(auditLogs.targetId, targetId)).orderBy(asc(auditLogs.at)));
}

describe("the autoscaling job", () => {
  it("in dry run records a sustained burst's launch and launches nothing; repeated holds are recorded once", async () => {
    const { model, region } = await fresh();
    await setPolicy(model, region, { max_nodes: 4, target_queue_per_node: 2, scale_up_after_seconds: 60 });
    await heartbeat(freshId("as-a"), model, region, { waiting: 10, inFlight: 8, running: 8 });
    await heartbeat(freshId("as-b"), model, region, { waiting: 10, inFlight: 8, running: 8 });
    const { run } = jobDeps();
    const t0 = Date.now();

    await run(t0);
    await run(t0 + 30 * S);
    let rows = await decisionsOf(model, region);
    expect(rows.map((r) => [r.action, r.details.rule, r.dryRun])).toEqual([["hold", "queue_sustaining", true]]);
    expect(rows[0]?.reason).toContain("Waiting per node 10 is above the target 2 for 0 s of the 60 s");

    await run(t0 + 61 * S);
    rows = await decisionsOf(model, region);
    expect(rows.map((r) => [r.action, r.dryRun])).toEqual([["hold", true], ["launch", true]]);
    expect(rows[1]).toMatchObject({ launchId: null, details: { rule: "queue", count: 2, serving: 2, waiting_total: 20, waiting_per_node: 10 } });
    expect(await launchesOf(model, region)).toEqual([]);
    expect((await auditOf(`${model}/${region}`)).map((a) => a.action)).toEqual(["autoscaling.policy.create"]);
  });

  it("in mode on launches through provisioning, audits it, and counts the launches on their way", async () => {
    const { model, region } = await fresh();
    await setPolicy(model, region, { max_nodes: 4, target_queue_per_node: 2, scale_up_after_seconds: 60, mode: "on" });
    await heartbeat(freshId("as-a"), model, region, { waiting: 10, inFlight: 8, running: 8 });
    await heartbeat(freshId("as-b"), model, region, { waiting: 10, inFlight: 8, running: 8 });
    const { run } = jobDeps();
    const t0 = Date.now();

    await run(t0);
    await run(t0 + 61 * S);
    const launches = await launchesOf(model, region);
    expect(launches).toHaveLength(2);
    for (const l of launches) {
      expect(l).toMatchObject({ state: "pending", provider: "aws", gpu: "A10G", spot: false, requestedBy: "autoscaler", replacesNodeId: null });
      expect(l.reason).toMatch(/^autoscaler: Waiting per node 10 has been above the target 2 for 61 s/);
    }
    const rows = await decisionsOf(model, region);
    expect(rows.map((r) => [r.action, r.dryRun])).toEqual([["hold", false], ["launch", false]]);
    expect(rows[1]?.launchId).toBe(launches[0]?.id);
    expect(rows[1]?.details.launch_ids).toEqual(launches.map((l) => l.id));
    const audit = await auditOf(`${model}/${region}`);
    const acted = audit.find((a) => a.action === "autoscaling.launch");
    expect(acted).toMatchObject({ actor: "autoscaler", targetType: "autoscaling_policy", details: { decision_id: rows[1]?.id, launch_ids: launches.map((l) => l.id) } });

    // Still 20 waiting, but two launches are on their way: 4 nodes, the maximum.
    await run(t0 + 200 * S);
    expect(await launchesOf(model, region)).toHaveLength(2);
    const last = (await decisionsOf(model, region)).at(-1);
    expect(last).toMatchObject({ action: "hold", details: { rule: "at_max", serving: 2, on_the_way: 2 } });
  });

  it("drains an idle launched node in mode on (provisioning then terminates it), never a manual one", async () => {
    const { model, region } = await fresh();
    await setPolicy(model, region, { max_nodes: 4, target_queue_per_node: 2, idle_seconds: 300, mode: "on" });
    const [launch] = await query((db) => db.transaction((tx) => requestLaunch(tx, { provider: "aws", region, model, gpu: "A10G", spot: false, reason: "manual", requestedBy: "test" }, 1)));
    if (!launch) throw new Error("no launch");
    for (const [from, to] of [["pending", "launching"], ["launching", "registering"], ["registering", "serving"]] as const) {
      await query((db) => transition(db, launch.id, [from], to));
    }
    const manual = freshId("as-manual");
    await heartbeat(launch.nodeId, model, region, {});
    await heartbeat(manual, model, region, {});
    const { run } = jobDeps();
    const t0 = Date.now();

    await run(t0);
    await run(t0 + 299 * S);
    expect((await decisionsOf(model, region)).map((r) => [r.action, r.details.rule])).toEqual([["hold", "steady"]]);
    await run(t0 + 300 * S);
    const rows = await decisionsOf(model, region);
    expect(rows.map((r) => [r.action, r.nodeId])).toEqual([["hold", null], ["drain", launch.nodeId]]);
    expect(rows[1]?.reason).toContain(`Node ${launch.nodeId} has been idle for 300 s (≥ 300 s)`);
    const [after] = await query((db) => db.select().from(nodeLaunches).where(eq(nodeLaunches.id, launch.id)));
    expect(after?.state).toBe("draining");
    const [node] = await query((db) => db.select().from(nodes).where(eq(nodes.id, launch.nodeId)));
    expect(node?.status).toBe("draining");
    expect((await auditOf(launch.nodeId)).map((a) => [a.action, a.actor])).toContainEqual(["node.terminate", "autoscaler"]);
    expect((await auditOf(`${model}/${region}`)).map((a) => a.action)).toContain("autoscaling.drain");

    // The manual node idles on: it is never the autoscaler's to take down.
    await run(t0 + 3600 * S);
    expect((await decisionsOf(model, region)).filter((r) => r.action === "drain")).toHaveLength(1);
  });

  it("replaces a node that got a spot notice, once", async () => {
    const { model, region } = await fresh();
    await setPolicy(model, region, { max_nodes: 4, target_queue_per_node: 2, mode: "on", spot: true });
    const spotNode = freshId("as-spot");
    await heartbeat(spotNode, model, region, { inFlight: 1, running: 1 });
    const deadline = new Date(Date.now() + 120_000).toISOString();
    const res = await signedNodeRequest(SPOT_PATH, spotNode, { nodeId: spotNode, provider: "aws", action: "terminate", deadline, noticedAt: new Date().toISOString(), detail: {} });
    expect(res.status).toBe(202);
    await res.arrayBuffer();
    const { run } = jobDeps();
    await eventually(async () => {
      await run();
      const launches = await launchesOf(model, region);
      return launches.length > 0 ? launches : undefined;
    });
    await run(Date.now() + 60 * S);
    const launches = await launchesOf(model, region);
    expect(launches).toHaveLength(1);
    expect(launches[0]).toMatchObject({ replacesNodeId: spotNode, spot: true, requestedBy: "autoscaler" });
    const replace = (await decisionsOf(model, region)).filter((r) => r.action === "replace");
    expect(replace).toHaveLength(1);
    expect(replace[0]?.reason).toMatch(new RegExp(`^Node ${spotNode} got a spot notice \\(terminate, goes away in \\d+ s\\): launching a replacement\\.$`));
  });

  it("goes on with the other policies when one policy's action is refused", async () => {
    const broken = await fresh();
    const fine = await fresh();
    await setPolicy(broken.model, broken.region, { min_nodes: 1, max_nodes: 2, target_queue_per_node: 2, mode: "on" });
    await setPolicy(fine.model, fine.region, { min_nodes: 1, max_nodes: 2, target_queue_per_node: 2, mode: "on" });
    // The model leaves the catalogue after its policy was set: provisioning refuses its launch.
    expectStatus(await admin("PUT", `/models/${broken.model}`, { active: false }), 200);
    const { run, lines } = jobDeps();
    await run();
    const [refused] = await decisionsOf(broken.model, broken.region);
    expect(refused).toMatchObject({ action: "launch", launchId: null, dryRun: false });
    expect(refused?.reason).toContain("Not done: Model");
    expect(refused?.details.error).toContain("not an active model of the catalogue");
    expect(lines.some((l) => l.event === "autoscaling_action_failed" && l.fields.model === broken.model)).toBe(true);
    expect(await launchesOf(broken.model, broken.region)).toEqual([]);
    expect(await launchesOf(fine.model, fine.region)).toHaveLength(1);
  });
});

describe("the autoscaling job without Redis", () => {
  it("holds every policy (recorded once) and launches nothing when the live node state cannot be read", async () => {
    const { model, region } = await fresh();
    await setPolicy(model, region, { min_nodes: 2, max_nodes: 4, target_queue_per_node: 2, mode: "on" });
    const lines: { event: string; fields: Record<string, unknown> }[] = [];
    // Nothing listens on port 9: every Redis call fails (after the client's deadline).
    const deps = depsFrom({ ...env, UPSTASH_REDIS_REST_URL: "http://127.0.0.1:9" }, () => undefined, (event, fields) => lines.push({ event, fields }));
    const runs = await runAutoscaling(deps);
    await runAutoscaling(deps);
    const mine = runs.find((r) => r.model === model);
    expect(mine?.decisions.map((d) => [d.action, d.rule])).toEqual([["hold", "no_live_state"]]);
    const rows = await decisionsOf(model, region);
    expect(rows.map((r) => [r.action, r.details.rule, r.dryRun])).toEqual([["hold", "no_live_state", false]]);
    expect(rows[0]?.reason).toContain("The nodes' live state (Redis) could not be read");
    expect(await launchesOf(model, region)).toEqual([]);
    expect(lines.some((l) => l.event === "autoscaling_live_state_unavailable")).toBe(true);
  });
});

describe("/admin/autoscaling", () => {
  it("creates a policy in dry run, updates it, shows it with its decisions and what it would do now, and deletes it", async () => {
    const { model, region } = await fresh();
    const created = await admin<PolicyJson>("PUT", `/autoscaling/${model}/${region}`, { max_nodes: 3, target_queue_per_node: 4, provider: "gcp", gpu: "L4", min_nodes: 1 });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ object: "autoscaling_policy", model, region, min_nodes: 1, max_nodes: 3, target_queue_per_node: 4, scale_up_after_seconds: 120, idle_seconds: 900, spot: false, mode: "dry_run" });
    const updated = expectStatus(await admin<PolicyJson>("PUT", `/autoscaling/${model}/${region}`, { idle_seconds: 600 }), 200);
    expect(updated).toMatchObject({ idle_seconds: 600, max_nodes: 3, provider: "gcp" });

    const { run } = jobDeps();
    await run();
    const list = expectStatus(await admin<List<PolicyStatusJson>>("GET", "/autoscaling"), 200);
    const shown = list.data.find((p) => p.model === model && p.region === region);
    expect(shown?.last_decisions.map((d) => [d.action, d.dry_run, d.details.rule])).toEqual([["launch", true, "below_min"]]);
    expect(shown?.now.decisions).toEqual([expect.objectContaining({ action: "launch", count: 1, reason: "0 nodes serving or on the way, below the minimum of 1: launching 1." })]);
    expect(shown?.now.figures).toMatchObject({ serving: 0, on_the_way: 0, min_nodes: 1, max_nodes: 3 });
    const one = expectStatus(await admin<PolicyStatusJson>("GET", `/autoscaling/${model}/${region}`), 200);
    expect(one.last_decisions).toHaveLength(1);

    const audit = await auditOf(`${model}/${region}`);
    expect(audit.map((a) => [a.action, a.actor])).toEqual([
      ["autoscaling.policy.create", "admin-token"],
      ["autoscaling.policy.update", "admin-token"],
    ]);
    expect(audit[1]?.details).toMatchObject({ before: { idle_seconds: 900 }, after: { idle_seconds: 600 } });

    expectStatus(await admin("DELETE", `/autoscaling/${model}/${region}`), 200);
    expect((await auditOf(`${model}/${region}`)).at(-1)?.action).toBe("autoscaling.policy.delete");
    expect((await admin<ErrorBody>("GET", `/autoscaling/${model}/${region}`)).status).toBe(404);
    expect((await admin<ErrorBody>("DELETE", `/autoscaling/${model}/${region}`)).status).toBe(404);
  });

  it("refuses invalid policies with a 400 naming the field", async () => {
    const { model, region } = await fresh();
    const cases: [string, string, unknown, string, string][] = [
      [model, region, { target_queue_per_node: 2, provider: "aws", gpu: "A10G" }, "max_nodes", "A new policy needs max_nodes."],
      [model, region, { max_nodes: 2, min_nodes: 3, target_queue_per_node: 2, provider: "aws", gpu: "A10G" }, "min_nodes", "min_nodes (3) must not exceed max_nodes (2)."],
      [model, region, { max_nodes: 2, target_queue_per_node: -1, provider: "aws", gpu: "A10G" }, "target_queue_per_node", ""],
      [model, region, { max_nodes: 2, target_queue_per_node: 1, provider: "aws", gpu: "A10G", mode: "always" }, "mode", ""],
      [model, region, { max_nodes: 2, target_queue_per_node: 1, provider: "AWS!", gpu: "A10G" }, "provider", ""],
      [model, region, { max_nodes: 2, target_queue_per_node: 1, provider: "aws", gpu: "A10G", colour: "red" }, "colour", "Unknown field colour."],
      ["no-such-model", region, { max_nodes: 2, target_queue_per_node: 1, provider: "aws", gpu: "A10G" }, "model", "Model no-such-model is not an active model of the catalogue"],
      [model, "Bad_Region", { max_nodes: 2, target_queue_per_node: 1, provider: "aws", gpu: "A10G" }, "region", "The region in the path must be a cloud region"],
    ];
    for (const [m, r, body, param, message] of cases) {
      const res = await admin<ErrorBody>("PUT", `/autoscaling/${m}/${r}`, body);
      expect({ param, status: res.status, error: res.body.error.param }).toEqual({ param, status: 400, error: param });
      expect(res.body.error.message).toContain(message);
    }
    expect((await admin<ErrorBody>("GET", `/autoscaling/${model}/${region}`)).status).toBe(404);
  });

  it("is for the operator only", async () => {
    const { adminKey } = await sandbox();
    const { model, region } = await fresh();
    const res = await admin<ErrorBody>("GET", "/autoscaling", undefined, adminKey);
    expect(res.status).toBe(403);
    expect(res.body.error.message).toContain("Only the operator (ADMIN_TOKEN) can manage autoscaling");
    expect((await admin<ErrorBody>("PUT", `/autoscaling/${model}/${region}`, { max_nodes: 1, target_queue_per_node: 1, provider: "aws", gpu: "A10G" }, adminKey)).status).toBe(403);
  });
});
