/**
 * The backplane as operators run it: `node backplane/src/main.ts start` as a real process,
 * signals included.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { describe, expect, it } from "vitest";
import { freePort } from "../../dev/ports.ts";
import { startRecordingGateway } from "../support/recording-gateway.ts";
import { signedPost, TEST_NODE, TEST_SECRET, useBackplane, waitUntil } from "../support/backplane-harness.ts";

const kit = useBackplane();

async function startProcess(env: Record<string, string>): Promise<{ child: ChildProcess; url: string; exit: Promise<number | null>; output: () => string }> {
  const port = await freePort();
  const child = spawn(process.execPath, ["backplane/src/main.ts", "start"], {
    env: { ...process.env, BACKPLANE_NODE_ID: TEST_NODE, BACKPLANE_REGION: "test", BACKPLANE_SECRET: TEST_SECRET, BACKPLANE_PORT: String(port), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.on("data", (c: Buffer) => (output += c.toString()));
  child.stderr?.on("data", (c: Buffer) => (output += c.toString()));
  const exit = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  kit.defer(async () => {
    if (child.exitCode === null) child.kill("SIGKILL");
    await exit;
  });
  const url = `http://127.0.0.1:${port}`;
  await waitUntil(async () => (await fetch(`${url}/health`).catch(() => null))?.ok === true, 15_000, "backplane up");
  return { child, url, exit, output: () => output };
}

const slowStream = { model: "sim-llama-8b", messages: [{ role: "user", content: "tell me a story" }], max_tokens: 20, stream: true };

describe("backplane process", () => {
  it("registers with the gateway by heartbeat, signed, with its engines' load", async () => {
    const gateway = await startRecordingGateway(TEST_SECRET);
    kit.defer(() => gateway.close());
    const sim = await kit.sim();
    const node = await startProcess({ BACKPLANE_ENGINES: `kind=sim,id=gpu0,url=${sim.url}`, BACKPLANE_GATEWAY_URL: gateway.url, BACKPLANE_HEARTBEAT_INTERVAL_MS: "200" });
    await waitUntil(() => gateway.heartbeats.length >= 2, 5_000, "two heartbeats");
    expect(gateway.rejected).toEqual([]);
    const hb = gateway.heartbeats.at(-1);
    expect(hb).toMatchObject({
      nodeId: TEST_NODE,
      region: "test",
      url: node.url,
      status: "ready",
      models: ["sim-embed", "sim-llama-8b"],
      intervalMs: 200,
      engines: [{ id: "gpu0", kind: "sim", healthy: true, circuit: "closed", maxConcurrency: 64, running: 0, waiting: 0 }],
    });
    expect(hb?.engines[0]?.generationTokensTotal).toBe(0);
  });

  it("drains on SIGTERM: refuses new requests, finishes streams in flight, reports draining, exits 0", async () => {
    const gateway = await startRecordingGateway(TEST_SECRET);
    kit.defer(() => gateway.close());
    const sim = await kit.sim({ interTokenMs: 40 });
    const node = await startProcess({ BACKPLANE_ENGINES: `kind=sim,url=${sim.url}`, BACKPLANE_GATEWAY_URL: gateway.url, BACKPLANE_DRAIN_GRACE_MS: "10000" });
    const streams = [await signedPost(node.url, "/v1/chat/completions", slowStream), await signedPost(node.url, "/v1/chat/completions", slowStream)];
    const bodies = streams.map((r) => r.text());

    node.child.kill("SIGTERM");
    await waitUntil(() => gateway.heartbeats.some((h) => h.status === "draining"), 3_000, "draining heartbeat").catch((err: unknown) => {
      throw new Error(`${String(err)}\n${node.output()}`);
    });
    const refused = await signedPost(node.url, "/v1/chat/completions", slowStream);
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBe("1");
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("draining");

    for (const body of await Promise.all(bodies)) {
      expect(body.endsWith("data: [DONE]\n\n")).toBe(true);
      expect(body).not.toContain('"error"');
      expect(body.match(/"content":"[^"]+"/g)?.length).toBe(20);
    }
    expect(await node.exit).toBe(0);
    expect(node.output()).toContain('"event":"drain_finished"');
    expect(node.output()).toContain('"result":"drained"');
  });

  it("exits at once on a second signal", async () => {
    const sim = await kit.sim({ interTokenMs: 500 });
    const node = await startProcess({ BACKPLANE_ENGINES: `kind=sim,url=${sim.url}`, BACKPLANE_DRAIN_GRACE_MS: "60000" });
    const stream = await signedPost(node.url, "/v1/chat/completions", slowStream);
    void stream.text().catch(() => "");
    node.child.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 200));
    const started = Date.now();
    node.child.kill("SIGINT");
    expect(await node.exit).toBe(1);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it("never writes its secret to the logs", async () => {
    const sim = await kit.sim();
    const node = await startProcess({ BACKPLANE_ENGINES: `kind=sim,url=${sim.url},api-key=engine-key-123`, BACKPLANE_LOG_LEVEL: "debug" });
    await (await signedPost(node.url, "/v1/chat/completions", { ...slowStream, stream: false, max_tokens: 2 })).arrayBuffer();
    await fetch(`${node.url}/v1/chat/completions`, { method: "POST", body: "{}" });
    node.child.kill("SIGTERM");
    await node.exit;
    expect(node.output()).toContain('"event":"request"');
    expect(node.output()).not.toContain(TEST_SECRET);
    expect(node.output()).not.toContain("engine-key-123");
  });
});
