/**
 * End to end: `npm run backplane -- fedattn start|join|status` as separate processes, configured by
 * the daemon's BACKPLANE_* variables, against the real local stack's gateway (wrangler dev, the
 * session Durable Objects, Redis nonces), each node with its own simulated engine.
 */
import { execFile, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { checksum, simulatedKv } from "../../backplane/src/fedattn/kv.ts";
import type { ParticipantSummary } from "../../backplane/src/fedattn/participant.ts";
import { startSimEngine, type SimEngine } from "../../backplane/src/sim/index.ts";
import { deriveNodeSecret } from "../../schema/contracts/signing.ts";
import { startTestStack, type TestStack } from "../support/e2e-stack.ts";

const run = promisify(execFile);
let started: TestStack;
let master: string;
const sims: SimEngine[] = [];

beforeAll(async () => {
  started = await startTestStack("fedattn_cli");
  master = readFileSync(join(started.dataDir, "node-signing-secret"), "utf8").trim();
}, 120_000);

afterAll(async () => {
  await started?.close();
});

afterEach(async () => {
  await Promise.all(sims.splice(0).map((s) => s.close()));
});

/** A node's settings as the daemon reads them: its id, derived secret (version 1: not registered yet), the gateway and its own simulator. */
async function nodeEnv(nodeId: string): Promise<Record<string, string>> {
  const sim = await startSimEngine({ ttftMs: 0, interTokenMs: 0 });
  sims.push(sim);
  return {
    ...process.env,
    BACKPLANE_NODE_ID: nodeId,
    BACKPLANE_REGION: "local",
    BACKPLANE_SECRET: await deriveNodeSecret(master, nodeId, 1),
    BACKPLANE_GATEWAY_URL: started.stack.gatewayUrl,
    BACKPLANE_ENGINES: `kind=sim,url=${sim.url}`,
  };
}

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function fedattn(args: string[], env: Record<string, string>): Promise<Result> {
  try {
    const { stdout, stderr } = await run(process.execPath, ["backplane/src/main.ts", "fedattn", ...args], { env, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** Starts `fedattn start` in the background; resolves the session id it prints, and later its result. */
function startInBackground(args: string[], env: Record<string, string>): { sessionId: Promise<string>; done: Promise<Result> } {
  const child = spawn(process.execPath, ["backplane/src/main.ts", "fedattn", "start", ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  let resolveId: (id: string) => void = () => undefined;
  let rejectId: (err: Error) => void = () => undefined;
  const sessionId = new Promise<string>((resolve, reject) => {
    resolveId = resolve;
    rejectId = reject;
  });
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
    const match = /Started session (fa_[0-9a-f]+)/.exec(stderr);
    if (match?.[1] !== undefined) resolveId(match[1]);
  });
  const done = new Promise<Result>((resolve) =>
    child.on("close", (code) => {
      rejectId(new Error(`fedattn start exited ${code} before starting a session: ${stderr}`));
      resolve({ code: code ?? -1, stdout, stderr });
    }),
  );
  return { sessionId, done };
}

describe("backplane fedattn against the local gateway", () => {
  it("a node starts a session and waits, status lists it, a second node joins, both sync every range and the same aggregate reaches both engines", async () => {
    const envA = await nodeEnv("fa-cli-a");
    const envB = await nodeEnv("fa-cli-b");
    const common = ["--blocks", "8", "--aggregate-wait-ms", "20000", "--json"];
    const a = startInBackground(["--prompt", "node A's private prompt", "--sync-interval", "4", "--wait-for", "2", "--wait-timeout-ms", "30000", ...common], envA);
    const sessionId = await a.sessionId;

    const status = await fedattn(["status", "--session", sessionId], envA);
    expect(status.code).toBe(0);
    expect(status.stdout).toContain(`${sessionId}  initiator fa-cli-a, participants fa-cli-a, sync interval 4, privacy on, 0 syncs`);

    const b = await fedattn(["join", "--session", sessionId, "--prompt", "node B's private prompt", ...common], envB);
    expect(b.code, b.stderr).toBe(0);
    expect(b.stderr).toContain(`Joined session ${sessionId} (sync interval 4; participants fa-cli-a, fa-cli-b)`);
    const resultA = await a.done;
    expect(resultA.code, resultA.stderr).toBe(0);

    const summaryA = JSON.parse(resultA.stdout) as ParticipantSummary;
    const summaryB = JSON.parse(b.stdout) as ParticipantSummary;
    expect(summaryA).toMatchObject({ sessionId, nodeId: "fa-cli-a", role: "initiator", syncInterval: 4 });
    expect(summaryB).toMatchObject({ sessionId, nodeId: "fa-cli-b", role: "participant", syncInterval: 4 });
    for (const summary of [summaryA, summaryB]) {
      expect(summary.syncs.map((s) => [s.blockStart, s.blockEnd])).toEqual([[0, 3], [4, 7]]);
      for (const sync of summary.syncs) {
        expect([...sync.participants].sort()).toEqual(["fa-cli-a", "fa-cli-b"]);
        expect(sync.missing).toEqual([]);
        expect(sync.weight).toBe(2);
        expect(sync.syncLatencyMs).toBeGreaterThanOrEqual(0);
        // [4 blocks, 16, 64] float32, K and V, after the 56-byte header (24 + two rank-3 shapes of 16).
        expect(sync.contributedBytes).toBe(2 * 4 * 16 * 64 * 4 + 56);
        expect(sync.bytes).toBe(sync.contributedBytes);
      }
    }
    // Who leaves first leaves an active session; the last one out ends it.
    expect([summaryA.finish.sessionStatus, summaryB.finish.sessionStatus].sort()).toEqual(["active", "ended"]);

    // The average of the two prompts' K/V (weights 1 and 1) is what both engines now hold.
    for (const [i, [blockStart, blockEnd]] of [[0, 3], [4, 7]].entries()) {
      const ka = simulatedKv({ model: "sim-llama-8b", prompt: "node A's private prompt", blockStart: blockStart ?? 0, blockEnd: blockEnd ?? 0 });
      const kb = simulatedKv({ model: "sim-llama-8b", prompt: "node B's private prompt", blockStart: blockStart ?? 0, blockEnd: blockEnd ?? 0 });
      const k = new Float32Array(ka.k.length);
      const v = new Float32Array(ka.v.length);
      for (let j = 0; j < k.length; j++) {
        k[j] = ((ka.k[j] ?? 0) + (kb.k[j] ?? 0)) / 2;
        v[j] = ((ka.v[j] ?? 0) + (kb.v[j] ?? 0)) / 2;
      }
      for (const summary of [summaryA, summaryB]) {
        expect(summary.syncs[i]?.kChecksum).toBeCloseTo(checksum(k), 9);
        expect(summary.syncs[i]?.vChecksum).toBeCloseTo(checksum(v), 9);
      }
    }
    for (const sim of sims) {
      const applied = (await (await fetch(`${sim.url}/switchyard/fedattn/applied`)).json()) as { data: { block_start: number; k_checksum: number }[] };
      expect(applied.data.map((d) => [d.block_start, d.k_checksum])).toEqual(summaryA.syncs.map((s) => [s.blockStart, s.kChecksum]));
    }

    const after = await fedattn(["status"], envA);
    expect(after.stdout.trim()).toBe("No active federated-attention session includes this node.");
  });

  it("gives up waiting for participants with exit 1 and leaves the session it started, which then ends", async () => {
    const env = await nodeEnv("fa-cli-c");
    const res = await fedattn(["start", "--prompt", "p", "--wait-for", "2", "--wait-timeout-ms", "300"], env);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/Session (fa_[0-9a-f]+) has 1 of the 2 participants waited for after 300 ms \(fa-cli-c\)\. Have the others join with --session fa_[0-9a-f]+/);
    expect(res.stderr).toMatch(/Left session fa_[0-9a-f]+ after the error below/);
    const status = await fedattn(["status", "--json"], env);
    expect(JSON.parse(status.stdout)).toEqual([]);
  });

  it("a join asking for another sync interval than the session's exits 2 and leaves again", async () => {
    const envD = await nodeEnv("fa-cli-d");
    const envE = await nodeEnv("fa-cli-e");
    // d waits for 3, so e's brief membership never lets it start syncing; long enough for e's and the
    // status command's processes to run on a busy machine, after which d gives up (exit 1).
    const d = startInBackground(["--prompt", "p", "--sync-interval", "4", "--wait-for", "3", "--wait-timeout-ms", "15000"], envD);
    const sessionId = await d.sessionId;
    const e = await fedattn(["join", "--session", sessionId, "--prompt", "q", "--sync-interval", "8"], envE);
    expect(e.code).toBe(2);
    expect(e.stderr).toContain(`Session ${sessionId} syncs every 4 blocks, not 8: leave out the sync interval when joining.`);
    expect(e.stderr).toContain(`Left session ${sessionId} after the error below`);
    const status = JSON.parse((await fedattn(["status", "--json", "--session", sessionId], envD)).stdout) as { participants: string[] }[];
    expect(status.map((s) => s.participants)).toEqual([["fa-cli-d"]]);
    expect((await d.done).code).toBe(1);
  });
});
