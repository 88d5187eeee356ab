/**
 * Autoscaling on the local stack with the fake `sky` (tests/support/fake-sky.ts) and the
 * provisioner running as the operator would run it (`npm run admin -- provisioner run`): a burst
 * through the openai client queues on a one-slot engine and launches a node that registers and
 * serves; quiet drains it and `sky down` takes it away; a spot interruption notice on the stack's
 * node (from the fake AWS metadata server, sent by its backplane) launches a replacement.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { promisify } from "node:util";
import { join, resolve } from "node:path";
import { and, eq } from "drizzle-orm";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDb, type NodeDb } from "../../dev/db.ts";
import type { Stack } from "../../dev/stack.ts";
import { autoscalingDecisions, nodeLaunches } from "../../schema/tables/index.ts";
import type { PolicyJson, PolicyStatusJson } from "../../worker/src/autoscaling/wire.ts";
import { startFakeAws, type FakeAws } from "../support/fake-metadata.ts";
import { installFakeSky, type FakeSky } from "../support/fake-sky-path.ts";
import { startTestStack, type TestStack } from "../support/e2e-stack.ts";
import { processAlive } from "../support/process-alive.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const NODE = join(ROOT, "node_modules", ".bin", "node");
const exec = promisify(execFile);
const MODEL = "sim-llama-8b";
const REGION = "local";

let started: TestStack;
let stack: Stack;
let client: OpenAI;
let db: NodeDb;
let sky: FakeSky;
let aws: FakeAws;
let provisioner: ChildProcess;
let provisionerOutput = "";

async function adminApi<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(`${stack.gatewayUrl}/admin${path}`, {
    method,
    headers: { authorization: `Bearer ${stack.adminToken}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as T };
}

/** Runs the scheduled job (lifecycle of launches, then autoscaling) until `check` returns a value. */
async function scheduledUntil<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number, pauseMs = 1_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await stack.runScheduled();
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms. Provisioner said:\n${provisionerOutput.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, pauseMs));
  }
}

function launches() {
  return db.db.select().from(nodeLaunches).where(and(eq(nodeLaunches.model, MODEL), eq(nodeLaunches.region, REGION))).orderBy(nodeLaunches.createdAt);
}

function decisions() {
  return db.db.select().from(autoscalingDecisions).where(and(eq(autoscalingDecisions.model, MODEL), eq(autoscalingDecisions.region, REGION))).orderBy(autoscalingDecisions.at);
}


beforeAll(async () => {
  aws = await startFakeAws();
  // Heartbeats every 2 s: often enough for the job to see the queue, and a busy machine does not
  // make a node stale (three missed heartbeats) in the middle of the burst.
  sky = installFakeSky({ heartbeatMs: 2000 });
  // One slot and slow tokens: a burst of requests queues in the engine (vLLM's num_requests_waiting).
  started = await startTestStack("autoscaling", {
    simArgs: ["--max-concurrency", "1", "--ttft-ms", "10", "--inter-token-ms", "40"],
    backplaneEnv: { BACKPLANE_HEARTBEAT_INTERVAL_MS: "2000", BACKPLANE_SPOT_AWS: "true", BACKPLANE_AWS_METADATA_URL: aws.url, BACKPLANE_SPOT_POLL_INTERVAL_MS: "200" },
  });
  stack = started.stack;
  client = new OpenAI({ baseURL: `${stack.gatewayUrl}/v1`, apiKey: stack.apiKey, maxRetries: 0 });
  db = openDb(started.databaseUrl);
  provisioner = spawn(NODE, ["worker/cli/admin.ts", "provisioner", "run", "--interval-ms", "1000", "--url", stack.gatewayUrl, "--token", stack.adminToken], {
    cwd: ROOT,
    env: { ...process.env, ...sky.env() },
    stdio: ["ignore", "pipe", "pipe"],
  });
  provisioner.stdout?.on("data", (d: Buffer) => (provisionerOutput += d.toString()));
  provisioner.stderr?.on("data", (d: Buffer) => (provisionerOutput += d.toString()));
}, 180_000);

afterAll(async () => {
  if (provisioner && provisioner.exitCode === null) {
    const exited = new Promise((r) => provisioner.once("exit", r));
    provisioner.kill("SIGTERM");
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
  }
  await sky?.close();
  await db?.close();
  await started?.close();
  await aws?.close();
});

describe("autoscaling on the local stack with the fake sky", () => {
  it("launches a node on a sustained burst; the node registers and serves", async () => {
    const set = await adminApi<PolicyJson>("PUT", `/autoscaling/${MODEL}/${REGION}`, {
      min_nodes: 1,
      max_nodes: 2,
      target_queue_per_node: 1,
      scale_up_after_seconds: 2,
      idle_seconds: 5,
      provider: "aws",
      gpu: "A10G",
      spot: true,
      mode: "on",
    });
    expect(set.status).toBe(201);

    // Twelve requests of 60 tokens at 40 ms a token, one at a time: about half a minute of queue.
    const burst = Promise.allSettled(
      Array.from({ length: 12 }, (_, i) => client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: `burst ${i}` }], max_tokens: 60 })),
    );
    const launch = await scheduledUntil(
      "a launch for the burst",
      async () => {
        const rows = await launches();
        return rows[0];
      },
      25_000,
    );
    expect(launch).toMatchObject({ requestedBy: "autoscaler", provider: "aws", gpu: "A10G", spot: true, replacesNodeId: null });
    expect(launch.reason).toMatch(/^autoscaler: Waiting per node \d+(\.\d+)? has been above the target 1 for \d+ s \(≥ 2 s\): launching 1\.$/);
    expect((await decisions()).filter((d) => d.action === "hold").map((d) => d.details.rule)).toContain("queue_sustaining");
    expect((await decisions()).filter((d) => d.action === "launch")).toHaveLength(1);

    // The provisioner runs `sky launch`; the node heartbeats; the job marks it serving.
    const serving = await scheduledUntil(
      "the launched node serving",
      async () => {
        const [row] = await db.db.select().from(nodeLaunches).where(eq(nodeLaunches.id, launch.id));
        return row?.state === "serving" ? row : undefined;
      },
      90_000,
    );
    expect(serving.servingAt).not.toBeNull();
    expect(sky.calls().some((c) => c.args[0] === "launch" && c.args.includes(launch.cluster))).toBe(true);
    expect(sky.clusters().map((c) => c.nodeId)).toContain(launch.nodeId);

    // Requests reach it: the stack's node is busy with the burst's queue, the new one is not.
    const servedBy = new Set<string>();
    const deadline = Date.now() + 30_000;
    while (!servedBy.has(launch.nodeId) && Date.now() < deadline) {
      const { response } = await client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "after" }], max_tokens: 2 }).withResponse();
      servedBy.add(response.headers.get("x-switchyard-node") ?? "");
    }
    expect(servedBy).toContain(launch.nodeId);
    const answers = await burst;
    expect(answers.map((a) => (a.status === "fulfilled" ? Boolean(a.value.choices[0]?.message.content) : String(a.reason)))).toEqual(answers.map(() => true));
  }, 240_000);

  it("drains and terminates the launched node once it has idled past idle_seconds", async () => {
    const [launch] = await launches();
    if (!launch) throw new Error("no launch from the previous test");
    const cluster = sky.clusters().find((c) => c.nodeId === launch.nodeId);
    expect(cluster).toBeDefined();

    const drain = await scheduledUntil(
      "a drain decision",
      async () => (await decisions()).find((d) => d.action === "drain"),
      60_000,
    );
    expect(drain).toMatchObject({ nodeId: launch.nodeId, dryRun: false });
    expect(drain.reason).toMatch(new RegExp(`^Node ${launch.nodeId} has been idle for \\d+ s \\(≥ 5 s\\) and 1 node stay \\(minimum 1\\)`));

    const gone = await scheduledUntil(
      "the launched node terminated",
      async () => {
        const [row] = await db.db.select().from(nodeLaunches).where(eq(nodeLaunches.id, launch.id));
        return row?.state === "terminated" ? row : undefined;
      },
      60_000,
    );
    expect(gone.terminatedAt).not.toBeNull();
    expect(sky.calls().some((c) => c.args[0] === "down" && c.args.includes(launch.cluster))).toBe(true);
    expect(sky.clusters().map((c) => c.nodeId)).not.toContain(launch.nodeId);
    const pids = cluster?.pids ?? [];
    expect(pids.length).toBeGreaterThan(0);
    await expect.poll(() => pids.filter(processAlive), { timeout: 15_000 }).toEqual([]);

    // The stack's own node (not launched by the autoscaler) stays, at the minimum of 1.
    const status = await adminApi<PolicyStatusJson>("GET", `/autoscaling/${MODEL}/${REGION}`);
    expect(status.status).toBe(200);
    expect(status.body.now.figures).toMatchObject({ serving: 1, on_the_way: 0, min_nodes: 1 });
    expect(status.body.last_decisions.map((d) => d.action)).toContain("drain");

    // The same through the CLI, and a change it refuses with the API's message.
    const cli = (...args: string[]) => exec(NODE, ["worker/cli/admin.ts", ...args, "--url", stack.gatewayUrl, "--token", stack.adminToken], { cwd: ROOT });
    const list = await cli("autoscaling", "list");
    expect(list.stdout).toMatch(/MODEL\s+REGION\s+MODE/);
    expect(list.stdout).toMatch(/sim-llama-8b local: hold: 1 serving, 0 on the way \(min 1, max 2\)/);
    const refused = await cli("autoscaling", "set", MODEL, REGION, "--min", "5").then(
      () => null,
      (err: { stderr?: string; code?: number }) => err,
    );
    expect(refused?.code).not.toBe(0);
    expect(refused?.stderr).toContain("min_nodes (5) must not exceed max_nodes (2)");
  }, 180_000);

  it("launches a replacement when the stack's node gets a spot interruption notice", async () => {
    const time = new Date(Date.now() + 120_000).toISOString().replace(/\.\d+Z$/, "Z");
    aws.interrupt("terminate", time);
    const replacement = await scheduledUntil(
      "a replacement launch",
      async () => (await launches()).find((l) => l.replacesNodeId === stack.nodeId),
      30_000,
    );
    expect(replacement).toMatchObject({ requestedBy: "autoscaler", spot: true });
    expect(replacement.reason).toMatch(new RegExp(`^autoscaler: Node ${stack.nodeId} got a spot notice \\(terminate, goes away in \\d+ s\\): launching a replacement\\.$`));
    const replace = (await decisions()).filter((d) => d.action === "replace");
    expect(replace).toHaveLength(1);
    expect(replace[0]).toMatchObject({ nodeId: stack.nodeId, launchId: replacement.id, dryRun: false });

    // The replacement comes up and serves while the noticed node drains.
    await scheduledUntil(
      "the replacement serving",
      async () => {
        const [row] = await db.db.select().from(nodeLaunches).where(eq(nodeLaunches.id, replacement.id));
        return row?.state === "serving" ? row : undefined;
      },
      90_000,
    );
    // Routing picks the new node up once its registration dropped the routing snapshot (a few seconds at most).
    let servedBy: string | null = null;
    const deadline = Date.now() + 15_000;
    while (servedBy !== replacement.nodeId && Date.now() < deadline) {
      const { response } = await client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "still there?" }], max_tokens: 2 }).withResponse();
      servedBy = response.headers.get("x-switchyard-node");
      if (servedBy !== replacement.nodeId) await new Promise((r) => setTimeout(r, 500));
    }
    expect(servedBy).toBe(replacement.nodeId);
    // One notice, one replacement, however often the job ran.
    expect((await launches()).filter((l) => l.replacesNodeId === stack.nodeId)).toHaveLength(1);
  }, 180_000);
});
