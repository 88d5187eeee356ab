/**
 * End to end: the local stack started with dev/topologies/three-regions.json (six backplanes with
 * simulated engines in three regions, as `npm start -- --topology …` does it), and the node controls
 * tests use to kill, drain, restart and stall hosts.
 */
import { join } from "node:path";
import { eq } from "drizzle-orm";
import { Redis } from "ioredis";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDb, type NodeDb } from "../../dev/db.ts";
import { ROOT, type Stack, type StackNode } from "../../dev/stack.ts";
import { loadTopology } from "../../dev/topology.ts";
import { nodes, regions, usageRecords } from "../../schema/tables/index.ts";
import { startTestStack, type TestStack } from "../support/e2e-stack.ts";
import { REDIS_URL } from "../support/fixtures.ts";

const topology = loadTopology(join(ROOT, "dev/topologies/three-regions.json"));
let started: TestStack;
let redisPrefix: string;
let stack: Stack;
let client: OpenAI;
let db: NodeDb;
let redis: Redis;

beforeAll(async () => {
  started = await startTestStack("topo", { topology });
  ({ stack, redisPrefix } = started);
  client = new OpenAI({ baseURL: `${stack.gatewayUrl}/v1`, apiKey: stack.apiKey, maxRetries: 0 });
  db = openDb(started.databaseUrl);
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
}, 120_000);

afterAll(async () => {
  redis?.disconnect();
  await db?.close();
  await started?.close();
});

function node(id: string): StackNode {
  const found = stack.nodes.find((n) => n.id === id);
  if (!found) throw new Error(`no node ${id}`);
  return found;
}

/** The status code of GET url, or the error code when nothing answers (ECONNREFUSED, TimeoutError). */
async function probe(url: string, timeoutMs = 2_000): Promise<number | string> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    await res.arrayBuffer();
    return res.status;
  } catch (err) {
    if (err instanceof Error && err.name === "TimeoutError") return "TimeoutError";
    const cause = err instanceof Error ? (err.cause as { code?: string } | undefined) : undefined;
    return cause?.code ?? String(err);
  }
}

/** The gateway's live entry of a node (Redis), written on every heartbeat it takes. */
async function live(id: string): Promise<{ status: string; at: number } | null> {
  const raw = await redis.hget(`${redisPrefix}nodes:live`, id);
  return raw === null ? null : (JSON.parse(raw) as { status: string; at: number });
}

describe("the three-regions topology", () => {
  it("registers every node in its region, with the regions' coordinates and price multipliers", async () => {
    expect(stack.nodes.map((n) => [n.id, n.region, n.state])).toEqual(topology.nodes.map((n) => [n.id, n.region, "running"]));
    expect([stack.nodeId, stack.backplaneUrl, stack.simUrl]).toEqual(["us-east-1", node("us-east-1").backplaneUrl, node("us-east-1").simUrl]);
    const rows = await db.db
      .select({ id: nodes.id, url: nodes.url, models: nodes.models, status: nodes.reportedStatus, region: regions.id, name: regions.name, latitude: regions.latitude, longitude: regions.longitude, multiplier: regions.priceMultiplier })
      .from(nodes)
      .innerJoin(regions, eq(nodes.regionId, regions.id));
    expect(rows.sort((a, b) => a.id.localeCompare(b.id))).toEqual(
      stack.nodes
        .map((n) => {
          const r = topology.regions.find((region) => region.id === n.region);
          return { id: n.id, url: n.backplaneUrl, models: ["sim-embed", "sim-llama-8b"], status: "ready", region: n.region, name: r?.name, latitude: r?.latitude, longitude: r?.longitude, multiplier: r?.priceMultiplier.toFixed(4) };
        })
        .sort((a, b) => a.id.localeCompare(b.id)),
    );
    // No "local" region from the single-node stack.
    expect((await db.db.select({ id: regions.id }).from(regions)).map((r) => r.id).sort()).toEqual(["ap-southeast", "eu-west", "us-east"]);
  });

  it("answers a chat completion through the openai client from the region nearest to the caller's location header", async () => {
    const { data, response } = await client.chat.completions
      .create({ model: "sim-llama-8b", messages: [{ role: "user", content: "Hello from Frankfurt" }], max_tokens: 6 }, { headers: { "x-switchyard-client-location": "50.11,8.68" } })
      .withResponse();
    expect(response.status).toBe(200);
    expect(data.choices[0]?.message.content?.length).toBeGreaterThan(0);
    expect(data.usage?.completion_tokens).toBe(6);
    const requestId = response.headers.get("x-request-id") ?? "";
    const deadline = Date.now() + 10_000;
    let row: typeof usageRecords.$inferSelect | undefined;
    while (!row && Date.now() < deadline) {
      await stack.runScheduled();
      [row] = await db.db.select().from(usageRecords).where(eq(usageRecords.id, requestId));
    }
    // The stack sets TRUST_LOCATION_HEADER, so the gateway takes the caller to be in Frankfurt.
    expect(topology.nodes.find((n) => n.id === row?.nodeId)?.region).toBe("eu-west");
  });

  it("killNode takes the host down (its backplane and engine refuse connections); startNode brings it back on the same URLs and it re-registers", async () => {
    const target = node("eu-west-2");
    const { backplaneUrl, simUrl } = target;
    const oldPids = [target.backplane.process.pid, target.sim.process.pid];
    await stack.killNode("eu-west-2");
    expect(target.state).toBe("down");
    expect(target.backplane.process.signalCode).toBe("SIGKILL");
    expect(target.sim.process.signalCode).toBe("SIGKILL");
    expect(await probe(`${backplaneUrl}/health`)).toBe("ECONNREFUSED");
    expect(await probe(`${simUrl}/health`)).toBe("ECONNREFUSED");

    const restartedAt = Date.now();
    await stack.startNode("eu-west-2");
    expect(target.state).toBe("running");
    expect([target.backplaneUrl, target.simUrl]).toEqual([backplaneUrl, simUrl]);
    expect([target.backplane.process.pid, target.sim.process.pid]).not.toEqual(oldPids);
    expect(stack.children).toContain(target.backplane);
    expect(await probe(`${backplaneUrl}/health`)).toBe(200);
    expect((await live("eu-west-2"))?.at).toBeGreaterThanOrEqual(restartedAt);
    expect((await live("eu-west-2"))?.status).toBe("ready");
  });

  it("stopNode drains the backplane (the gateway sees it draining, it exits 0) and leaves the engine running", async () => {
    const target = node("us-east-2");
    await stack.stopNode("us-east-2");
    expect(target.state).toBe("stopped");
    expect(target.backplane.process.exitCode).toBe(0);
    expect((await live("us-east-2"))?.status).toBe("draining");
    expect(await probe(`${target.backplaneUrl}/health`)).toBe("ECONNREFUSED");
    expect(await probe(`${target.simUrl}/health`)).toBe(200);

    await stack.startNode("us-east-2");
    expect(target.state).toBe("running");
    expect((await live("us-east-2"))?.status).toBe("ready");
  });

  it("pauseNode stalls the engine (connections hang) and resumeNode lets it answer again", async () => {
    const target = node("ap-southeast-1");
    stack.pauseNode("ap-southeast-1");
    try {
      expect(target.state).toBe("paused");
      expect(await probe(`${target.simUrl}/health`, 500)).toBe("TimeoutError");
      // The backplane itself still answers: only the engine behind it is stuck.
      expect(await probe(`${target.backplaneUrl}/health`)).toBe(200);
    } finally {
      stack.resumeNode("ap-southeast-1");
    }
    expect(target.state).toBe("running");
    expect(await probe(`${target.simUrl}/health`)).toBe(200);
  });

  it("refuses to control a node that is not in the topology", async () => {
    await expect(stack.killNode("eu-west-9")).rejects.toThrow(`unknown node "eu-west-9"`);
    expect(() => stack.pauseNode("eu-west-9")).toThrow(/the stack runs us-east-1, us-east-2/);
  });
});
