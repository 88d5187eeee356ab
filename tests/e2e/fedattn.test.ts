/**
 * End to end: a three-node federated-attention session on the local topology
 * (dev/topologies/three-regions.json, one node per region), as docs/fedattn.md walks it through.
 * The initiator runs the participant library; the two others run `backplane fedattn join` as the
 * CLI, each with its own simulated engine; all leave when done (the last one out ends it). The aggregate every engine ends up with is checked
 * against the weighted average of the simulated K/V computed here; one node leaves after the first
 * sync and the two others go on; the records reach Postgres and the syncs the metrics.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checksum, simulatedKv } from "../../backplane/src/fedattn/kv.ts";
import { runParticipant, type ParticipantSummary } from "../../backplane/src/fedattn/participant.ts";
import { openDb, type NodeDb } from "../../dev/db.ts";
import { ROOT, type Stack, type StackNode } from "../../dev/stack.ts";
import { loadTopology } from "../../dev/topology.ts";
import { deriveNodeSecret } from "../../schema/contracts/signing.ts";
import { fedattnContributions, fedattnSessions } from "../../schema/tables/index.ts";
import { startTestStack, type TestStack } from "../support/e2e-stack.ts";

const topology = loadTopology(join(ROOT, "dev/topologies/three-regions.json"));
let started: TestStack;
let stack: Stack;
let db: NodeDb;
let masterSecret: string;

beforeAll(async () => {
  started = await startTestStack("fedattn", { topology });
  stack = started.stack;
  db = openDb(started.databaseUrl);
  masterSecret = readFileSync(join(started.dataDir, "node-signing-secret"), "utf8").trim();
}, 120_000);

afterAll(async () => {
  await db?.close();
  await started?.close();
});

function node(id: string): StackNode {
  const found = stack.nodes.find((n) => n.id === id);
  if (!found) throw new Error(`no node ${id}`);
  return found;
}

/** `npm run backplane -- fedattn …` as the node would run it (its settings in BACKPLANE_* variables); the parsed --json summary. */
async function cli(n: StackNode, args: string[]): Promise<ParticipantSummary> {
  const env = {
    ...process.env,
    BACKPLANE_NODE_ID: n.id,
    BACKPLANE_REGION: n.region,
    BACKPLANE_SECRET: await deriveNodeSecret(masterSecret, n.id, 1),
    BACKPLANE_GATEWAY_URL: stack.gatewayUrl,
    BACKPLANE_ENGINES: `kind=sim,id=sim-0,url=${n.simUrl}`,
  };
  const child = spawn(process.execPath, ["backplane/src/main.ts", "fedattn", ...args, "--json"], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  if (code !== 0) throw new Error(`backplane fedattn ${args.join(" ")} exited ${code}:\n${err}\n${out}`);
  return JSON.parse(out) as ParticipantSummary;
}

interface Applied {
  block_start: number;
  block_end: number;
  k_checksum: number;
  v_checksum: number;
  participants?: string[];
}

async function appliedOn(n: StackNode): Promise<Applied[]> {
  const res = await fetch(`${n.simUrl}/switchyard/fedattn/applied`);
  return ((await res.json()) as { data: Applied[] }).data;
}

describe("a three-node federated-attention session on the local topology", () => {
  it("averages the three engines' K/V by weight, survives a node leaving, and records it all", async () => {
    const [a, b, c] = [node("us-east-1"), node("eu-west-1"), node("ap-southeast-1")];
    const models = (await (await fetch(`${a.simUrl}/v1/models`)).json()) as { data: { id: string }[] };
    const model = models.data[0]?.id ?? "";
    const prompts = { [a.id]: "the initiator's private prompt", [b.id]: "a second, different prompt", [c.id]: "a third prompt that leaves early" };
    const weights = { [a.id]: 1, [b.id]: 2, [c.id]: 1 };
    const blockShape = [4, 8];
    const metricsBefore = await syncCount();

    // The initiator starts the session and waits for the two others; they join once its id is known.
    let announce: (id: string) => void = () => {};
    const sessionId = new Promise<string>((resolve) => (announce = resolve));
    const initiator = runParticipant({
      gatewayUrl: stack.gatewayUrl,
      nodeId: a.id,
      secret: await deriveNodeSecret(masterSecret, a.id, 1),
      engine: { kind: "sim", url: a.simUrl },
      prompt: prompts[a.id] ?? "",
      model,
      shape: blockShape,
      weight: weights[a.id],
      blocks: 16,
      syncInterval: 8,
      waitFor: 3,
      log: (event, fields) => {
        if (event === "fedattn_session_started") announce(String(fields.sessionId));
      },
    });
    const id = await sessionId;
    // Everyone waits for all three before the first sync, so none syncs with a partial set.
    const common = ["--model", model, "--shape", "4x8", "--blocks", "16", "--wait-for", "3"];
    const [ra, rb, rc] = await Promise.all([
      initiator,
      cli(b, ["join", "--session", id, "--prompt", prompts[b.id] ?? "", "--weight", "2", ...common]),
      // Takes part in the first sync only, then leaves.
      cli(c, ["join", "--session", id, "--prompt", prompts[c.id] ?? "", "--syncs", "1", ...common]),
    ]);

    // Sync 1 (blocks 0-7): all three, weights 1, 2, 1. Sync 2 (blocks 8-15): a and b, weights 1, 2.
    expect(ra.syncs.map((s) => [s.blockStart, s.blockEnd, [...s.participants].sort()])).toEqual([
      [0, 7, [a.id, b.id, c.id].sort()],
      [8, 15, [a.id, b.id].sort()],
    ]);
    expect(rb.syncs.map((s) => [s.blockStart, s.blockEnd])).toEqual([
      [0, 7],
      [8, 15],
    ]);
    expect(rc.syncs).toHaveLength(1);
    expect(rc.finish).toMatchObject({ status: "left", sessionStatus: "active" });
    // Everyone left; the last one out ended the session.
    expect([ra, rb].map((r) => r.finish.status)).toEqual(["left", "left"]);
    expect([ra, rb].map((r) => r.finish.sessionStatus).sort()).toEqual(["active", "ended"]);

    const expected = (nodes: StackNode[], blockStart: number, blockEnd: number) => {
      const total = nodes.reduce((s, n) => s + (weights[n.id] ?? 0), 0);
      const parts = nodes.map((n) => ({ w: (weights[n.id] ?? 0) / total, kv: simulatedKv({ model, prompt: prompts[n.id] ?? "", blockStart, blockEnd, blockShape }) }));
      const first = parts[0]?.kv;
      if (!first) throw new Error("no parts");
      const k = new Float32Array(first.k.length);
      const v = new Float32Array(first.v.length);
      for (let i = 0; i < k.length; i++) k[i] = parts.reduce((s, p) => s + p.w * (p.kv.k[i] ?? 0), 0);
      for (let i = 0; i < v.length; i++) v[i] = parts.reduce((s, p) => s + p.w * (p.kv.v[i] ?? 0), 0);
      return { k: checksum(k), v: checksum(v) };
    };
    const sync1 = expected([a, b, c], 0, 7);
    const sync2 = expected([a, b], 8, 15);
    // Every engine holds what it was sent: the same average, applied to its own blocks.
    for (const n of [a, b, c]) {
      const applied = await appliedOn(n);
      const first = applied.find((s) => s.block_start === 0);
      expect(first?.k_checksum).toBeCloseTo(sync1.k, 3);
      expect(first?.v_checksum).toBeCloseTo(sync1.v, 3);
      const second = applied.find((s) => s.block_start === 8);
      if (n === c) expect(second).toBeUndefined();
      else {
        expect(second?.k_checksum).toBeCloseTo(sync2.k, 3);
        expect(second?.v_checksum).toBeCloseTo(sync2.v, 3);
      }
    }
    // And the summaries agree with the engines.
    expect(rb.syncs[1]?.kChecksum).toBeCloseTo(sync2.k, 3);

    // Records: one session row (ended, c departed, two syncs) and five contributions, no tensors.
    const row = await poll(async () => {
      await stack.runScheduled();
      const [r] = await db.db.select().from(fedattnSessions).where(eq(fedattnSessions.id, id));
      return r?.status === "ended" && r.totalSyncs === 2 && r.averageSyncLatencyMs !== null ? r : undefined;
    });
    expect(row).toMatchObject({ initiator: a.id, syncInterval: 8, privacyMode: true });
    expect(row.participants[0]).toBe(a.id);
    expect([...row.participants].sort()).toEqual([a.id, b.id, c.id].sort());
    // c left while the others went on, and so did whichever of a and b left first; the last one out ended it.
    expect(row.departed[0]).toBe(c.id);
    expect(row.departed).toHaveLength(2);
    const contributions = await poll(async () => {
      await stack.runScheduled();
      const rows = await db.db.select().from(fedattnContributions).where(eq(fedattnContributions.sessionId, id));
      return rows.length === 5 ? rows : undefined;
    });
    expect(contributions.filter((r) => r.participant === c.id).map((r) => [r.blockStart, r.blockEnd])).toEqual([[0, 7]]);
    // 8 blocks of [4, 8] float32, K and V, plus the header (24 + 2 × (4 + 3 × 4) bytes).
    expect(new Set(contributions.map((r) => r.sizeBytes))).toEqual(new Set([2 * 8 * 4 * 8 * 4 + 24 + 2 * 16]));
    expect(contributions.find((r) => r.participant === b.id)?.weight).toBe(2);

    // Two syncs in the histograms.
    expect(await poll(async () => ((await syncCount()) >= metricsBefore + 2 ? true : undefined))).toBe(true);
  }, 120_000);
});

async function syncCount(): Promise<number> {
  const res = await fetch(`${stack.gatewayUrl}/admin/metrics`, { headers: { authorization: `Bearer ${stack.adminToken}` } });
  const text = await res.text();
  return Number(/^switchyard_fedattn_sync_duration_seconds_count (\S+)$/m.exec(text)?.[1] ?? NaN);
}

async function poll<T>(fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 250));
  }
}
