import { env } from "cloudflare:test";
import { and, eq, inArray } from "drizzle-orm";
import { afterEach, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { deriveNodeSecret } from "../../schema/contracts/signing.ts";
import { auditLogs, nodeLaunches, nodes } from "../../schema/tables/index.ts";
import type { NodeDetailJson, NodeJson } from "../../worker/src/nodes/admin-wire.ts";
import type { LaunchJson } from "../../worker/src/provisioning/launches.ts";
import type { SkyTask } from "../../worker/src/provisioning/task.ts";
import { admin, expectStatus, sandbox, type ErrorBody, type List } from "./admin-helpers.ts";
import { beat, sendHeartbeat } from "./fleet-helpers.ts";
import { flushNow, query } from "./helpers.ts";

type Launched = LaunchJson & { task_yaml: string };
interface LaunchAnswer {
  object: "list";
  data: Launched[];
  message: string;
}

const MODEL = "sim-llama-8b";
const BODY = { provider: "aws", region: "us-east-1", model: MODEL, gpu: "A10G", count: 1, spot: false };

// Launched nodes that heartbeat here serve the shared test model at a dead URL: remove them and end
// their launches after each test, so later test files never route to them.
afterEach(async () => {
  const launched = await query((db) => db.select({ nodeId: nodeLaunches.nodeId }).from(nodeLaunches));
  const registered = new Set((await query((db) => db.select({ id: nodes.id }).from(nodes))).map((n) => n.id));
  for (const { nodeId } of launched) if (registered.has(nodeId)) await admin("DELETE", `/nodes/${nodeId}`);
  await query((db) => db.update(nodeLaunches).set({ state: "terminated" }).where(inArray(nodeLaunches.nodeId, launched.map((l) => l.nodeId).concat([""]))));
});

async function launch(body: Record<string, unknown> = {}): Promise<Launched[]> {
  return expectStatus(await admin<LaunchAnswer>("POST", "/nodes/launch", { ...BODY, ...body }), 201).data;
}

async function one(body: Record<string, unknown> = {}): Promise<Launched> {
  const [l] = await launch(body);
  if (!l) throw new Error("no launch");
  return l;
}

function claim(id: string) {
  return admin<Launched & ErrorBody>("POST", `/nodes/launches/${id}/claim`);
}

function report(id: string, state: string, error?: string) {
  return admin<LaunchJson & ErrorBody>("POST", `/nodes/launches/${id}/state`, error === undefined ? { state } : { state, error });
}

/** Puts a launch's last change `ms` in the past (the deadlines count from it). */
async function age(id: string, ms: number): Promise<void> {
  await query((db) => db.update(nodeLaunches).set({ updatedAt: new Date(Date.now() - ms) }).where(eq(nodeLaunches.id, id)));
}

async function launchState(id: string): Promise<LaunchJson> {
  return expectStatus(await admin<LaunchJson>("GET", `/nodes/launches/${id}`), 200);
}

async function auditActions(nodeId: string): Promise<string[]> {
  const rows = await query((db) => db.select().from(auditLogs).where(eq(auditLogs.targetId, nodeId)));
  return rows.sort((a, b) => a.at.getTime() - b.at.getTime()).map((r) => r.action);
}

/** A launch claimed and reported up (registering), as the provisioner leaves it after `sky launch`. */
async function registering(): Promise<Launched> {
  const l = await one();
  expectStatus(await claim(l.id), 200);
  expect(expectStatus(await report(l.id, "registering"), 200).state).toBe("registering");
  return l;
}

describe("POST /admin/nodes/launch", () => {
  it("creates one pending launch per node with a SkyPilot task whose node secret is only under secrets, and audits each", async () => {
    const res = await admin<LaunchAnswer>("POST", "/nodes/launch", { ...BODY, count: 2, spot: true });
    const body = expectStatus(res, 201);
    expect(body.message).toContain("npm run admin -- provisioner run");
    expect(body.data).toHaveLength(2);
    const [a, b] = body.data;
    if (!a || !b) throw new Error("two launches expected");
    expect(a.node_id).not.toBe(b.node_id);
    for (const l of body.data) {
      expect(l).toMatchObject({ object: "node_launch", state: "pending", provider: "aws", region: "us-east-1", model: MODEL, gpu: "A10G", spot: true, reason: "manual", requested_by: "admin-token", error: null });
      expect(l.node_id).toMatch(/^sky-us-east-1-[0-9a-f]{8}$/);
      expect(l.cluster).toBe(l.node_id);
      const task = parse(l.task_yaml) as SkyTask;
      const secret = await deriveNodeSecret(env.NODE_SIGNING_SECRET, l.node_id, 1);
      expect(task.name).toBe(l.cluster);
      expect(task.workdir).toBe(".");
      expect(task.resources).toEqual({ cloud: "aws", region: "us-east-1", accelerators: "A10G:1", use_spot: true });
      expect(task.secrets).toEqual({ BACKPLANE_SECRET: secret });
      expect(task.envs).toMatchObject({ SWITCHYARD_MODEL: MODEL, BACKPLANE_NODE_ID: l.node_id, BACKPLANE_REGION: "us-east-1", BACKPLANE_GATEWAY_URL: "http://gateway.test", BACKPLANE_SPOT_AWS: "true" });
      expect(Object.values(task.envs).join("\n")).not.toContain(secret);
      expect(l.task_yaml.split(secret)).toHaveLength(2);
      expect(task.setup).toContain('pip install "$VLLM_SPEC"');
      expect(task.run).toContain('vllm serve "$SWITCHYARD_MODEL"');
      expect(task.run).toContain("--host 127.0.0.1");
      expect(task.run).toContain("--scheduling-policy priority");
      // The backplane passes the gateway's rank to vLLM as `priority` only for engines marked so.
      expect(task.run).toMatch(/BACKPLANE_ENGINES="kind=vllm,[^"]*,priority=1"/);
      expect(task.run).toContain("exec npm run backplane -- start");
      // Audited without the secret; lists never carry the task.
      const [audit] = await query((db) => db.select().from(auditLogs).where(and(eq(auditLogs.targetId, l.node_id), eq(auditLogs.action, "node.launch"))));
      expect(audit?.details).toMatchObject({ after: { node_id: l.node_id, state: "pending" } });
      expect(JSON.stringify(audit?.details)).not.toContain(secret);
    }
    const list = expectStatus(await admin<List<LaunchJson>>("GET", "/nodes/launches?state=pending&region=us-east-1"), 200);
    expect(list.data.map((l) => l.id)).toEqual(expect.arrayContaining([a.id, b.id]));
    expect(JSON.stringify(list)).not.toContain("task_yaml");
    // Not registered yet: /admin/nodes shows them beside the registry.
    const nodesList = expectStatus(await admin<List<NodeJson> & { launches: LaunchJson[] }>("GET", "/nodes"), 200);
    expect(nodesList.launches.map((l) => l.node_id)).toEqual(expect.arrayContaining([a.node_id, b.node_id]));
  });

  it("refuses bad input with a 400 naming the field", async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ model: "no-such-model" }, "model"],
      [{ gpu: "A10G:1; rm -rf /" }, "gpu"],
      [{ provider: "AWS" }, "provider"],
      [{ region: "us east" }, "region"],
      [{ count: 0 }, "count"],
      [{ count: 17 }, "count"],
      [{ spot: "yes" }, "spot"],
      [{ colour: "red" }, "colour"],
    ];
    for (const [change, param] of cases) {
      const res = await admin<ErrorBody>("POST", "/nodes/launch", { ...BODY, ...change });
      expect({ change, status: res.status, param: res.body.error.param, code: res.body.error.code }).toEqual({ change, status: 400, param, code: "invalid_value" });
    }
    const missing = await admin<ErrorBody>("POST", "/nodes/launch", { provider: "aws" });
    expect(missing.status).toBe(400);
    expect(missing.body.error.param).toBe("region");
  });

  it("is for the operator only", async () => {
    const box = await sandbox();
    const res = await admin<ErrorBody>("POST", "/nodes/launch", BODY, box.adminKey);
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe("permission_denied");
    expect((await admin<ErrorBody>("GET", "/nodes/launches", undefined, box.adminKey)).status).toBe(403);
    expect((await admin<ErrorBody>("POST", "/nodes/launch", BODY, null)).status).toBe(401);
  });

  it("with dry_run answers the tasks it would launch and writes nothing", async () => {
    const before = await query((db) => db.select({ id: nodeLaunches.id }).from(nodeLaunches));
    const res = await admin<{ dry_run: boolean; data: { node_id: string; task_yaml: string }[] }>("POST", "/nodes/launch", { ...BODY, count: 2, dry_run: true });
    const body = expectStatus(res, 200);
    expect(body.dry_run).toBe(true);
    expect(body.data).toHaveLength(2);
    const task = parse(body.data[0]?.task_yaml ?? "") as SkyTask;
    expect(task.resources.accelerators).toBe("A10G:1");
    expect(task.secrets.BACKPLANE_SECRET).toContain("derived from NODE_SIGNING_SECRET");
    const after = await query((db) => db.select({ id: nodeLaunches.id }).from(nodeLaunches));
    expect(after.length).toBe(before.length);
  });
});

describe("the provisioner's claims and reports", () => {
  it("lets exactly one of two concurrent claims have a pending launch", async () => {
    const l = await one();
    const [x, y] = await Promise.all([claim(l.id), claim(l.id)]);
    expect([x.status, y.status].sort()).toEqual([200, 409]);
    const won = x.status === 200 ? x.body : y.body;
    expect(won.state).toBe("launching");
    expect(parse(won.task_yaml)).toMatchObject({ secrets: { BACKPLANE_SECRET: await deriveNodeSecret(env.NODE_SIGNING_SECRET, l.node_id, 1) } });
    expect((await claim(l.id)).status).toBe(409);
    expect((await launchState(l.id)).state).toBe("launching");
  });

  it("takes only the reports the state allows, and a failure with its error", async () => {
    const l = await one();
    const early = await report(l.id, "registering");
    expect(early.status).toBe(409);
    expect(early.body.error.param).toBe("state");
    expectStatus(await claim(l.id), 200);
    const noError = await report(l.id, "failed");
    expect(noError.status).toBe(400);
    expect(noError.body.error.param).toBe("error");
    const failed = expectStatus(await report(l.id, "failed", "ResourcesUnavailableError: no A10G in us-east-1"), 200);
    expect(failed).toMatchObject({ state: "failed", error: "ResourcesUnavailableError: no A10G in us-east-1" });
    expect(failed.terminated_at).not.toBeNull();
    expect((await report(l.id, "registering")).status).toBe(409);
    expect((await admin<ErrorBody>("POST", `/nodes/launches/${l.id}/state`, { state: "serving" })).status).toBe(400);
    expect(await auditActions(l.node_id)).toEqual(["node.launch", "node.launch.claim", "node.launch.failed"]);
  });
});

describe("a launched node's life", () => {
  it("goes registering → serving on its first ready heartbeat, then draining → terminating → terminated, shown in /admin/nodes", async () => {
    const l = await registering();
    // Up but not ready yet: the scheduled job leaves it registering.
    await sendHeartbeat(beat(l.node_id, { region: "us-east-1", url: "http://127.0.0.1:9", models: [MODEL], status: "unhealthy" }));
    await flushNow();
    expect((await launchState(l.id)).state).toBe("registering");
    await sendHeartbeat(beat(l.node_id, { region: "us-east-1", url: "http://127.0.0.1:9", models: [MODEL] }, { inFlight: 2 }));
    await flushNow();
    const serving = await launchState(l.id);
    expect(serving.state).toBe("serving");
    expect(serving.serving_at).not.toBeNull();
    const listed = expectStatus(await admin<List<NodeJson>>("GET", "/nodes"), 200).data.find((n) => n.id === l.node_id);
    expect(listed?.launch).toMatchObject({ id: l.id, state: "serving", provider: "aws", gpu: "A10G", spot: false, error: null });

    const terminating = await admin<LaunchJson>("POST", `/nodes/${l.node_id}/terminate`, { reason: "test" });
    expect(expectStatus(terminating, 202).state).toBe("draining");
    const detail = expectStatus(await admin<NodeDetailJson>("GET", `/nodes/${l.node_id}`), 200);
    expect(detail).toMatchObject({ status: "draining", launch: { state: "draining" } });
    // Asking again changes nothing.
    expect(expectStatus(await admin<LaunchJson>("POST", `/nodes/${l.node_id}/terminate`), 202).state).toBe("draining");
    // Requests still in flight keep it draining…
    await age(l.id, 20_000);
    await sendHeartbeat(beat(l.node_id, { region: "us-east-1", url: "http://127.0.0.1:9", models: [MODEL] }, { inFlight: 2 }));
    await flushNow();
    expect((await launchState(l.id)).state).toBe("draining");
    // …until a heartbeat says nothing is.
    await sendHeartbeat(beat(l.node_id, { region: "us-east-1", url: "http://127.0.0.1:9", models: [MODEL] }, { inFlight: 0 }));
    await flushNow();
    expect((await launchState(l.id)).state).toBe("terminating");
    // The provisioner claims the teardown once, runs sky down, reports.
    const down = expectStatus(await claim(l.id), 200);
    expect(down.state).toBe("terminating");
    expect((await claim(l.id)).status).toBe(409);
    const done = expectStatus(await report(l.id, "terminated"), 200);
    expect(done).toMatchObject({ state: "terminated", error: null });
    expect(done.terminated_at).not.toBeNull();
    const gone = expectStatus(await admin<NodeDetailJson>("GET", `/nodes/${l.node_id}`), 200);
    expect(gone.launch?.state).toBe("terminated");
    expect((await admin<ErrorBody>("POST", `/nodes/${l.node_id}/terminate`)).status).toBe(409);
    expect(await auditActions(l.node_id)).toEqual(
      expect.arrayContaining(["node.launch", "node.launch.claim", "node.launch.registering", "node.register", "node.launch.serving", "node.terminate", "node.launch.terminating", "node.terminate.claim", "node.launch.terminated"]),
    );
    await query((db) => db.delete(nodes).where(eq(nodes.id, l.node_id)));
  });

  it("drains a node that stopped heartbeating at once, and one that keeps requests past the drain deadline", async () => {
    const quiet = await registering();
    await sendHeartbeat(beat(quiet.node_id, { region: "us-east-1", url: "http://127.0.0.1:9", models: [MODEL] }));
    const busy = await registering();
    await sendHeartbeat(beat(busy.node_id, { region: "us-east-1", url: "http://127.0.0.1:9", models: [MODEL] }, { inFlight: 3 }));
    await flushNow();
    for (const l of [quiet, busy]) expect(expectStatus(await admin<LaunchJson>("POST", `/nodes/${l.node_id}/terminate`), 202).state).toBe("draining");
    // The quiet node's last heartbeat (a stale one: 100 ms interval, sent long ago) still counts one in flight.
    await sendHeartbeat(beat(quiet.node_id, { region: "us-east-1", url: "http://127.0.0.1:9", models: [MODEL], intervalMs: 100 }, { inFlight: 1 }));
    await age(busy.id, 11 * 60_000);
    await new Promise((r) => setTimeout(r, 400));
    await flushNow();
    expect((await launchState(quiet.id)).state).toBe("terminating");
    expect((await launchState(busy.id)).state).toBe("terminating");
    await query((db) => db.delete(nodes).where(inArray(nodes.id, [quiet.node_id, busy.node_id])));
  });

  it("fails and tears down a node that never sends a ready heartbeat within the registration deadline", async () => {
    const l = await registering();
    await flushNow();
    expect((await launchState(l.id)).state).toBe("registering");
    await age(l.id, 31 * 60_000);
    await flushNow();
    const torn = await launchState(l.id);
    expect(torn.state).toBe("terminating");
    expect(torn.error).toContain("no ready heartbeat within 30 min");
    expectStatus(await claim(l.id), 200);
    // A teardown that failed is retried: the claim is released.
    expect(expectStatus(await report(l.id, "terminating", "sky down failed: timeout"), 200).state).toBe("terminating");
    expectStatus(await claim(l.id), 200);
    const done = expectStatus(await report(l.id, "terminated"), 200);
    expect(done.state).toBe("failed");
    expect(done.error).toContain("no ready heartbeat");
  });

  it("terminates a pending launch at once, and refuses a node that was not launched", async () => {
    const l = await one();
    const res = expectStatus(await admin<LaunchJson>("POST", `/nodes/${l.node_id}/terminate`), 202);
    expect(res.state).toBe("terminated");
    expect((await claim(l.id)).status).toBe(409);
    const manual = await admin<ErrorBody>("POST", "/nodes/wtest-live/terminate");
    expect(manual.status).toBe(404);
    expect(manual.body.error.message).toContain("was not launched through SkyPilot");
    const box = await sandbox();
    expect((await admin<ErrorBody>("POST", `/nodes/${l.node_id}/terminate`, undefined, box.adminKey)).status).toBe(403);
  });
});
