/**
 * End to end: SkyPilot provisioning on the local stack, with the fake `sky` (tests/support/fake-sky.ts)
 * on PATH in place of SkyPilot and a cloud. `npm run admin -- node launch` creates the launch, claims
 * it and runs `sky launch`; the fake starts a simulated engine and a backplane from the task's envs
 * and secrets; the backplane registers with signed heartbeats; the scheduled job marks it serving;
 * it answers the official `openai` client through the gateway; `node terminate` drains it, the
 * scheduled job sees nothing in flight, `provisioner run --once` runs `sky down`, and its processes
 * are gone.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { promisify } from "node:util";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import type { Stack } from "../../dev/stack.ts";
import type { NodeJson } from "../../worker/src/nodes/admin-wire.ts";
import type { LaunchJson } from "../../worker/src/provisioning/launches.ts";
import { startTestStack, type TestStack } from "../support/e2e-stack.ts";
import { installFakeSky, type FakeSky } from "../support/fake-sky-path.ts";
import { processAlive } from "../support/process-alive.ts";

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, "../..");
const MODEL = "sim-llama-8b";
const LAUNCH = ["node", "launch", "--provider", "aws", "--region", "us-east-1", "--model", MODEL, "--gpu", "A10G"];

let started: TestStack;
let stack: Stack;
let sky: FakeSky;

beforeAll(async () => {
  started = await startTestStack("provisioning");
  stack = started.stack;
  sky = installFakeSky({ heartbeatMs: 1_000 });
}, 180_000);

afterAll(async () => {
  await sky?.close();
  await started?.close();
});

interface Result {
  stdout: string;
  stderr: string;
  code: number;
}

/** Runs the admin CLI as `npm run admin` does; `withSky` puts the fake first on PATH. */
async function cli(args: string[], opts: { withSky: boolean; env?: Record<string, string> }): Promise<Result> {
  const env = { ...process.env, SWITCHYARD_ADMIN_TOKEN: "", SWITCHYARD_URL: "", ...(opts.withSky ? sky.env(opts.env) : opts.env) };
  try {
    const { stdout, stderr } = await run(process.execPath, ["worker/cli/admin.ts", ...args, "--url", stack.gatewayUrl, "--token", stack.adminToken], { cwd: ROOT, env, timeout: 120_000 });
    return { stdout: stdout.trim(), stderr, code: 0 };
  } catch (err) {
    const e = err as { stdout: string; stderr: string; code: number };
    return { stdout: e.stdout.trim(), stderr: e.stderr, code: e.code };
  }
}

async function admin<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(`${stack.gatewayUrl}/admin${path}`, {
    method,
    headers: { authorization: `Bearer ${stack.adminToken}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as T };
}

async function launches(): Promise<LaunchJson[]> {
  return (await admin<{ data: LaunchJson[] }>("GET", "/nodes/launches")).body.data;
}

async function nodeListed(id: string): Promise<NodeJson | undefined> {
  return (await admin<{ data: NodeJson[] }>("GET", "/nodes")).body.data.find((n) => n.id === id);
}

/** Polls until `fn` returns a value (running the scheduled job between tries when `scheduled`). */
async function until<T>(what: string, fn: () => Promise<T | undefined>, opts: { timeoutMs: number; scheduled?: boolean }): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    if (opts.scheduled) await stack.runScheduled();
    const value = await fn();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${opts.timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 500));
  }
}


describe("npm run admin -- node launch", () => {
  it("with --dry-run prints the task YAML and launches nothing", async () => {
    const before = await launches();
    const res = await cli([...LAUNCH, "--count", "2", "--spot", "--dry-run"], { withSky: true });
    expect(res.code).toBe(0);
    const docs = res.stdout.split(/^---$/m).map((d) => parse(d) as { resources: Record<string, unknown>; envs: Record<string, string>; run: string });
    expect(docs).toHaveLength(2);
    expect(docs[0]?.resources).toEqual({ cloud: "aws", region: "us-east-1", accelerators: "A10G:1", use_spot: true });
    expect(docs[0]?.envs.BACKPLANE_GATEWAY_URL).toBe(stack.gatewayUrl);
    expect(docs[0]?.run).toContain("--scheduling-policy priority");
    // The scripts SkyPilot runs with bash on the VM parse as bash.
    const task = docs[0] as unknown as { setup: string; run: string };
    for (const script of [task.setup, task.run]) await run("bash", ["-n", "-c", script]);
    expect(await launches()).toHaveLength(before.length);
    expect(sky.calls()).toEqual([]);
  });

  it("without sky on PATH creates the launch, prints its YAML and says how to launch it", async () => {
    const res = await cli(LAUNCH, { withSky: false });
    expect(res.code).toBe(0);
    expect(res.stderr).toContain("`sky` is not on PATH");
    expect(res.stderr).toContain("npm run admin -- provisioner run");
    const nodeId = /^# (sky-us-east-1-[0-9a-f]{8}) /m.exec(res.stdout)?.[1];
    expect(nodeId).toBeDefined();
    const task = parse(res.stdout.replace(/^#.*$/m, "")) as { secrets: Record<string, string> };
    expect(Object.keys(task.secrets)).toEqual(["BACKPLANE_SECRET"]);
    const pending = (await launches()).find((l) => l.node_id === nodeId);
    expect(pending?.state).toBe("pending");
    // Cleaned up: a pending launch is terminated at once (no cluster exists).
    const terminated = await cli(["node", "terminate", nodeId ?? ""], { withSky: false });
    expect(terminated.stdout).toContain(`${nodeId}: terminated`);
  });

  it("launches a node through sky that registers, serves the openai client, and is drained and taken down on terminate", async () => {
    // The stack's own node steps aside, so an answer can only come from the launched node.
    expect((await admin("POST", "/nodes/local-1/drain")).status).toBe(200);
    const res = await cli(LAUNCH, { withSky: true });
    expect(res, res.stderr).toMatchObject({ code: 0 });
    const nodeId = /^(sky-us-east-1-[0-9a-f]{8}): launched → registering$/m.exec(res.stdout)?.[1] ?? "";
    expect(nodeId).not.toBe("");
    const launchCall = sky.calls().find((c) => c.args[0] === "launch");
    expect(launchCall?.args.slice(0, 5)).toEqual(["launch", "-y", "-d", "-c", nodeId]);
    expect(launchCall?.cwd).toBe(ROOT);
    // The 0600 task file is gone once sky has read it.
    expect(existsSync(launchCall?.args[5] ?? "")).toBe(false);
    const [cluster] = sky.clusters();
    expect(cluster).toMatchObject({ name: nodeId, nodeId, cloud: "aws", region: "us-east-1", accelerators: "A10G:1" });

    // Heartbeats register it; the scheduled job sees the first ready one.
    const serving = await until("serving", async () => {
      const n = await nodeListed(nodeId);
      return n?.launch?.state === "serving" ? n : undefined;
    }, { timeoutMs: 60_000, scheduled: true });
    expect(serving).toMatchObject({ region_id: "us-east-1", url: cluster?.backplaneUrl, status: "active", healthy: true, models: [MODEL] });
    const listed = await cli(["node", "list"], { withSky: true });
    expect(listed.stdout).toContain("Launched with SkyPilot:");
    expect(listed.stdout).toMatch(new RegExp(`^${nodeId} +serving +aws +A10G`, "m"));

    const client = new OpenAI({ baseURL: `${stack.gatewayUrl}/v1`, apiKey: stack.apiKey, maxRetries: 0 });
    const answer = await until("an answer from the launched node", async () => {
      try {
        const { data, response } = await client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "hello" }], max_tokens: 8 }).withResponse();
        return response.headers.get("x-switchyard-node") === nodeId ? data : undefined;
      } catch {
        return undefined;
      }
    }, { timeoutMs: 20_000 });
    expect(answer.choices[0]?.message.content?.length).toBeGreaterThan(0);
    expect(answer.usage?.completion_tokens).toBeGreaterThan(0);

    const terminate = await cli(["node", "terminate", nodeId], { withSky: true });
    expect(terminate.stdout).toContain(`${nodeId}: draining`);
    expect((await nodeListed(nodeId))?.status).toBe("draining");
    // Nothing in flight in a heartbeat after the drain settled: terminating.
    await until("terminating", async () => ((await nodeListed(nodeId))?.launch?.state === "terminating" ? true : undefined), { timeoutMs: 60_000, scheduled: true });
    const down = await cli(["provisioner", "run", "--once"], { withSky: true });
    expect(down.stdout).toContain(`${nodeId}: taken down → terminated`);
    expect(sky.calls().at(-1)?.args).toEqual(["down", "-y", nodeId]);
    expect(sky.clusters()).toEqual([]);
    for (const pid of cluster?.pids ?? []) expect(processAlive(pid)).toBe(false);
    expect((await nodeListed(nodeId))?.launch?.state).toBe("terminated");
    expect((await admin("POST", "/nodes/local-1/undrain")).status).toBe(200);
  }, 240_000);

  it("reports a launch sky could not make as failed, with sky's error, after tearing down what it left", async () => {
    const created = await admin<{ data: LaunchJson[] }>("POST", "/nodes/launch", { provider: "aws", region: "us-east-1", model: MODEL, gpu: "H100" });
    expect(created.status).toBe(201);
    const launch = created.body.data[0];
    const res = await cli(["provisioner", "run", "--once"], { withSky: true, env: { FAKE_SKY_FAIL_LAUNCH: "1" } });
    expect(res.stdout).toContain(`${launch?.node_id}: launched → failed`);
    const failed = (await launches()).find((l) => l.id === launch?.id);
    expect(failed?.state).toBe("failed");
    expect(failed?.error).toContain("ResourcesUnavailableError");
    const calls = sky.calls().slice(-2).map((c) => c.args.slice(0, 2).join(" "));
    expect(calls).toEqual(["launch -y", "down -y"]);
  }, 120_000);

  it("provisioner run refuses to start without sky on PATH", async () => {
    const res = await cli(["provisioner", "run", "--once"], { withSky: false });
    expect(res.code).toBe(2);
    expect(res.stderr).toContain("`sky` is not on PATH");
  });
});
