/**
 * Region routing and failover end to end: a local topology of six backplanes with simulated engines
 * in three regions behind the real worker, driven with the official `openai` client. The caller's
 * location comes from the x-switchyard-client-location header (locally request.cf is fixed).
 */
import { eq } from "drizzle-orm";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDb, type NodeDb } from "../../dev/db.ts";
import type { Stack } from "../../dev/stack.ts";
import { parseTopology } from "../../dev/topology.ts";
import { usageRecords } from "../../schema/tables/index.ts";
import { startTestStack, type TestStack } from "../support/e2e-stack.ts";
import { uniqueSuffix } from "../support/fixtures.ts";

const PARIS = "48.86,2.35";
const SINGAPORE = "1.29,103.85";
const WASHINGTON = "38.9,-77.04";
const MODEL = "sim-llama-8b";

// EU engines run two sequences at a time, so a queue forms quickly.
const topology = parseTopology({
  regions: [
    { id: "us-east", name: "Ashburn", latitude: 39.04, longitude: -77.49 },
    { id: "eu-west", name: "Frankfurt", latitude: 50.11, longitude: 8.68 },
    { id: "ap-southeast", name: "Singapore", latitude: 1.35, longitude: 103.82 },
  ],
  nodes: [
    { id: "us-1", region: "us-east", sim: { ttftMs: 15, interTokenMs: 5 } },
    { id: "us-2", region: "us-east", sim: { ttftMs: 15, interTokenMs: 5 } },
    { id: "eu-1", region: "eu-west", sim: { ttftMs: 15, interTokenMs: 5, maxConcurrency: 2 } },
    { id: "eu-2", region: "eu-west", sim: { ttftMs: 15, interTokenMs: 5, maxConcurrency: 2 } },
    { id: "ap-1", region: "ap-southeast", sim: { ttftMs: 15, interTokenMs: 5 } },
    { id: "ap-2", region: "ap-southeast", sim: { ttftMs: 15, interTokenMs: 5 } },
  ],
});

let stack: Stack;
let started: TestStack;
let db: NodeDb;

beforeAll(async () => {
  started = await startTestStack("routing", {
    topology,
    // Engine load scraped twice a second, so a queue shows up in the next heartbeat.
    backplaneEnv: { BACKPLANE_LOAD_INTERVAL_MS: "500" },
    // Short per-attempt timeout and cool-down, so a stalled node is found and forgiven within seconds.
    workerVars: { UPSTREAM_CONNECT_TIMEOUT_MS: "1500", BREAKER_COOLDOWN_MS: "2000", ROUTING_CACHE_ISOLATE_SECONDS: "1" },
  });
  stack = started.stack;
  db = openDb(started.databaseUrl);
}, 180_000);

afterAll(async () => {
  await db?.close();
  await started?.close();
});

/** An openai client calling from `location`, with an optional API key. */
function clientAt(location: string, apiKey = stack.apiKey): OpenAI {
  return new OpenAI({ baseURL: `${stack.gatewayUrl}/v1`, apiKey, maxRetries: 0, defaultHeaders: { "x-switchyard-client-location": location } });
}

async function adminApi<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${stack.gatewayUrl}/admin${path}`, {
    method,
    headers: { authorization: `Bearer ${stack.adminToken}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = (await res.json()) as T;
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/** One short chat; returns the node and region that served it. */
async function servedBy(client: OpenAI, extra: Record<string, unknown> = {}): Promise<{ node: string; region: string }> {
  const { response } = await client.chat.completions
    .create({ model: MODEL, messages: [{ role: "user", content: "Where am I served?" }], max_tokens: 3, ...extra } as OpenAI.ChatCompletionCreateParamsNonStreaming)
    .withResponse();
  return { node: response.headers.get("x-switchyard-node") ?? "", region: response.headers.get("x-switchyard-region") ?? "" };
}

async function until<T>(fn: () => Promise<T | undefined>, timeoutMs = 15_000, stepMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

interface NodeView {
  id: string;
  healthy: boolean;
  circuit: string;
  waiting: number | null;
}
const nodeView = (id: string) => adminApi<NodeView>("GET", `/nodes/${id}`);

/** A tenant with an environment (optionally pinned or with a strategy) and a chat key, through the admin API. */
async function tenantKey(env: Record<string, unknown> = {}): Promise<string> {
  const tenant = await adminApi<{ id: string }>("POST", "/tenants", { name: `routing-${uniqueSuffix()}` });
  const environment = await adminApi<{ id: string }>("POST", "/environments", { tenant_id: tenant.id, name: "prod", ...env });
  const key = await adminApi<{ key: string }>("POST", "/keys", { environment_id: environment.id, name: "app" });
  return key.key;
}

describe("choosing a region", () => {
  it("sends each caller to the nearest region", async () => {
    expect((await servedBy(clientAt(PARIS))).region).toBe("eu-west");
    expect((await servedBy(clientAt(SINGAPORE))).region).toBe("ap-southeast");
    expect((await servedBy(clientAt(WASHINGTON))).region).toBe("us-east");
  });

  it("fails over to the next nearest region when a region has no healthy node, and comes back", async () => {
    await adminApi("POST", "/nodes/eu-1/drain");
    await adminApi("POST", "/nodes/eu-2/drain");
    try {
      // Paris: Ashburn (6,200 km) before Singapore (10,700 km).
      await until(async () => ((await servedBy(clientAt(PARIS))).region === "us-east" ? true : undefined));
    } finally {
      await adminApi("POST", "/nodes/eu-1/undrain");
      await adminApi("POST", "/nodes/eu-2/undrain");
    }
    await until(async () => ((await servedBy(clientAt(PARIS))).region === "eu-west" ? true : undefined));
  });

  it("keeps a pinned environment in its region, and answers 503 rather than leave it", async () => {
    const client = clientAt(PARIS, await tenantKey({ pinned_region: "ap-southeast" }));
    for (let i = 0; i < 3; i++) expect((await servedBy(client)).region).toBe("ap-southeast");
    await adminApi("POST", "/nodes/ap-1/drain");
    await adminApi("POST", "/nodes/ap-2/drain");
    try {
      const err = await until(async () => {
        try {
          await servedBy(client);
          return undefined;
        } catch (e) {
          return e as InstanceType<typeof OpenAI.APIError>;
        }
      });
      expect(err.status).toBe(503);
      expect(err.message).toContain("pinned");
    } finally {
      await adminApi("POST", "/nodes/ap-1/undrain");
      await adminApi("POST", "/nodes/ap-2/undrain");
    }
  });
});

describe("choosing a node", () => {
  it("least-load: sends new requests away from an engine with a queue", async () => {
    const eu1 = stack.nodes.find((n) => n.id === "eu-1");
    if (!eu1) throw new Error("no eu-1");
    // Fill eu-1's engine directly (two running, four waiting) with long generations.
    const direct = new OpenAI({ baseURL: `${eu1.simUrl}/v1`, apiKey: "sim", maxRetries: 0 });
    const hogs = Array.from({ length: 6 }, () =>
      direct.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "long" }], max_tokens: 400, ignore_eos: true } as OpenAI.ChatCompletionCreateParamsNonStreaming),
    );
    try {
      await until(async () => ((await nodeView("eu-1")).waiting ?? 0) > 0 ? true : undefined);
      const nodes: string[] = [];
      for (let i = 0; i < 8; i++) nodes.push((await servedBy(clientAt(PARIS))).node);
      expect(nodes).toEqual(Array(8).fill("eu-2"));
    } finally {
      await Promise.allSettled(hogs);
    }
  });

  it("prefix-affinity: the same prompt prefix always lands on one node, distinct prefixes use both", async () => {
    const client = clientAt(PARIS, await tenantKey({ routing_strategy: "prefix-affinity" }));
    const ask = async (system: string, question: string) =>
      (await servedBy(client, { messages: [{ role: "system", content: system }, { role: "user", content: question }] })).node;
    const same = new Set<string>();
    for (let i = 0; i < 8; i++) same.add(await ask("You are the switchyard handbook.", "What is a hump yard?"));
    expect(same.size).toBe(1);
    const distinct = new Set<string>();
    for (let i = 0; i < 16; i++) distinct.add(await ask(`You are assistant number ${i}.`, "Hello"));
    expect([...distinct].sort()).toEqual(["eu-1", "eu-2"]);
  });
});

describe("failover and stream integrity", () => {
  it("loses no request that had not started streaming when a node is killed under load", async () => {
    const client = clientAt(PARIS);
    const outcomes: { started: boolean; error: string | null }[] = [];
    const one = async () => {
      let started = false;
      try {
        const stream = await client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "load" }], max_tokens: 40, stream: true });
        for await (const chunk of stream) if (chunk.choices[0]?.delta.content) started = true;
        outcomes.push({ started, error: null });
      } catch (err) {
        outcomes.push({ started, error: String(err) });
      }
    };
    const load = (async () => {
      const end = Date.now() + 5_000;
      while (Date.now() < end) await Promise.all(Array.from({ length: 4 }, one));
    })();
    await new Promise((r) => setTimeout(r, 1_000));
    await stack.killNode("eu-1");
    await load;
    try {
      expect(outcomes.length).toBeGreaterThan(20);
      // Failures are only streams cut after their first token; nothing failed before streaming.
      expect(outcomes.filter((o) => o.error !== null && !o.started)).toEqual([]);
    } finally {
      await stack.startNode("eu-1");
    }
  });

  it("ends a stream cut in the middle with an error event, and meters what was delivered", async () => {
    const client = clientAt(SINGAPORE);
    const { data: stream, response } = await client.chat.completions
      .create({ model: MODEL, messages: [{ role: "user", content: "a long answer" }], max_tokens: 400, stream: true, ignore_eos: true } as OpenAI.ChatCompletionCreateParamsStreaming)
      .withResponse();
    const node = response.headers.get("x-switchyard-node") ?? "";
    let tokens = 0;
    const consume = async () => {
      for await (const chunk of stream) {
        if (chunk.choices[0]?.delta.content) tokens++;
        if (tokens === 5) void stack.killNode(node);
      }
    };
    try {
      await expect(consume()).rejects.toThrow(/stopped responding|failed/i);
      expect(tokens).toBeGreaterThanOrEqual(5);
      expect(tokens).toBeLessThan(400);
      const requestId = response.headers.get("x-request-id") ?? "";
      const row = await until(async () => {
        await stack.runScheduled();
        const [r] = await db.db.select().from(usageRecords).where(eq(usageRecords.id, requestId));
        return r;
      });
      expect(row).toMatchObject({ status: "error", nodeId: node, streamed: true });
      expect(row.completionTokens).toBeGreaterThanOrEqual(5);
    } finally {
      await stack.startNode(node);
    }
  });

  it("trips the breaker of a stalled node, serves everyone elsewhere meanwhile, and recovers", async () => {
    const client = clientAt(WASHINGTON);
    stack.pauseNode("us-1");
    try {
      // Concurrent requests spread over both nodes at random; those sent to the stalled one time out and
      // fail over (to us-2, or further when the machine is too busy for us-2 to answer within the
      // attempt timeout). Batches continue until the failures have opened the stalled node's circuit.
      const served: string[] = [];
      await until(
        async () => {
          const batch = await Promise.all(Array.from({ length: 4 }, () => servedBy(client)));
          served.push(...batch.map((r) => r.node));
          return (await nodeView("us-1")).circuit === "open" ? true : undefined;
        },
        20_000,
        0,
      );
      expect(served).not.toContain("us-1");
    } finally {
      stack.resumeNode("us-1");
    }
    // After the cool-down one trial goes through; the circuit closes and the node serves again.
    await until(async () => ((await servedBy(client)).node === "us-1" ? true : undefined), 20_000);
    await until(async () => ((await nodeView("us-1")).circuit === "closed" ? true : undefined));
  });

  it("moves traffic away from a draining node while its in-flight stream completes", async () => {
    const client = clientAt(SINGAPORE);
    const { data: stream, response } = await client.chat.completions
      .create({ model: MODEL, messages: [{ role: "user", content: "finish me" }], max_tokens: 300, stream: true, ignore_eos: true } as OpenAI.ChatCompletionCreateParamsStreaming)
      .withResponse();
    const node = response.headers.get("x-switchyard-node") ?? "";
    const other = node === "ap-1" ? "ap-2" : "ap-1";
    let tokens = 0;
    let finish: string | null = null;
    const consumed = (async () => {
      for await (const chunk of stream) {
        if (chunk.choices[0]?.delta.content) tokens++;
        finish = chunk.choices[0]?.finish_reason ?? finish;
      }
    })();
    await until(() => Promise.resolve(tokens > 3 ? true : undefined), 5_000, 20);
    const stopping = stack.stopNode(node);
    try {
      await until(async () => ((await servedBy(client)).node === other ? true : undefined), 5_000);
      for (let i = 0; i < 4; i++) expect((await servedBy(client)).node).toBe(other);
      await consumed;
      expect(tokens).toBe(300);
      expect(finish).toBe("length");
      await stopping;
    } finally {
      await stopping.catch(() => null);
      await stack.startNode(node);
    }
  });
});
