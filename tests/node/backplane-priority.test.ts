import { afterEach, describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../../backplane/src/config.ts";
import { startDaemon, type Daemon } from "../../backplane/src/daemon.ts";
import { engineBody } from "../../backplane/src/proxy/priority.ts";
import { ConcurrencyLimiter } from "../../backplane/src/engines/limiter.ts";
import { startSimEngine, type SimEngine } from "../../backplane/src/sim/index.ts";
import { PRIORITY_RANK_HEADER, signPriorityRank } from "../../schema/contracts/priority.ts";
import { NODE_HEADER, NONCE_HEADER, importSigningKey, signRequest } from "../../schema/contracts/signing.ts";

// The backplane turns the gateway's signed rank into vLLM's `priority` (docs/priority.md).

const SECRET = "c".repeat(64);
const NODE_ID = "gpu-prio-1";
const MESSAGES = [{ role: "user", content: "hello there" }];
let sim: SimEngine | null = null;
let backplane: Daemon | null = null;

afterEach(async () => {
  await backplane?.close();
  await sim?.close();
  backplane = null;
  sim = null;
});

async function start(policy: "fcfs" | "priority", engineOption: string): Promise<string> {
  sim = await startSimEngine({ port: 0, ttftMs: 0, interTokenMs: 5, maxConcurrency: 1, schedulingPolicy: policy });
  backplane = await startDaemon(
    parseConfig({ nodeId: NODE_ID, region: "test", secret: SECRET, port: 0, engines: `kind=sim,url=${sim.url}${engineOption}`, retryBackoffMs: [50], healthIntervalMs: 60_000, logLevel: "error" }),
  );
  return backplane.url;
}

/** A request signed as the gateway signs it, with a rank header (`forge`: a rank header whose MAC is wrong). */
async function signedPost(url: string, body: unknown, rank: { value: number; forge?: boolean } | null): Promise<Response> {
  const raw = JSON.stringify(body);
  const key = await importSigningKey(SECRET);
  const signed = await signRequest(key, "POST", "/v1/chat/completions", raw);
  const headers: Record<string, string> = { "content-type": "application/json", [NODE_HEADER]: NODE_ID, ...signed };
  if (rank) {
    const value = await signPriorityRank(key, signed[NONCE_HEADER], rank.value);
    headers[PRIORITY_RANK_HEADER] = rank.forge ? `${rank.value}.${"0".repeat(64)}` : value;
  }
  return fetch(`${url}/v1/chat/completions`, { method: "POST", headers, body: raw });
}

async function engineWaiting(): Promise<number> {
  const text = await (await fetch(`${sim?.url ?? ""}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith('vllm:num_requests_waiting{model_name="sim-llama-8b",engine="0"} '));
  return Number(line?.slice(line.lastIndexOf(" ") + 1) ?? "NaN");
}

/** Busies the engine, sends the requests one after the other (each waiting at the engine first), and returns the order they finished in. */
async function finishOrder(url: string, requests: { label: string; body: Record<string, unknown>; rank: { value: number; forge?: boolean } | null }[]): Promise<string[]> {
  const blocker = signedPost(url, { model: "sim-llama-8b", messages: MESSAGES, max_tokens: 200, ignore_eos: true }, { value: 0 });
  await new Promise((resolve) => setTimeout(resolve, 30));
  const order: string[] = [];
  const pending: Promise<void>[] = [];
  for (const [i, r] of requests.entries()) {
    pending.push(
      signedPost(url, { model: "sim-llama-8b", messages: MESSAGES, max_tokens: 1, ...r.body }, r.rank).then(async (res) => {
        expect(res.status, await res.clone().text()).toBe(200);
        await res.text();
        order.push(r.label);
      }),
    );
    const deadline = Date.now() + 5000;
    while ((await engineWaiting()) !== i + 1) {
      if (Date.now() > deadline) throw new Error(`request ${r.label} never waited at the engine`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
  expect((await blocker).status).toBe(200);
  await Promise.all(pending);
  return order;
}

describe("an engine with priority scheduling (priority=1)", () => {
  it("gets the gateway's rank as priority, so a client's own priority -100 cannot jump the queue", async () => {
    const url = await start("priority", ",priority=1");
    const order = await finishOrder(url, [
      { label: "batch asking for -100", body: { priority: -100 }, rank: { value: 5 } },
      { label: "interactive", body: {}, rank: { value: 1 } },
    ]);
    expect(order).toEqual(["interactive", "batch asking for -100"]);
  });

  it("treats a forged rank header as no rank (standard), behind a signed interactive rank", async () => {
    const url = await start("priority", ",priority=1");
    const order = await finishOrder(url, [
      { label: "forged 0", body: {}, rank: { value: 0, forge: true } },
      { label: "no rank", body: { priority: -5 }, rank: null },
      { label: "signed 1", body: {}, rank: { value: 1 } },
      { label: "signed 4", body: {}, rank: { value: 4 } },
    ]);
    expect(order).toEqual(["signed 1", "forged 0", "no rank", "signed 4"]);
  });
});

describe("an engine without priority scheduling", () => {
  it("gets no priority at all: a client's priority 7 would be vLLM's fcfs 400, and is removed instead", async () => {
    const url = await start("fcfs", "");
    const res = await signedPost(url, { model: "sim-llama-8b", messages: MESSAGES, max_tokens: 2, priority: 7 }, { value: 5 });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { object: string }).object).toBe("chat.completion");
  });
});

describe("engineBody", () => {
  const body = (o: unknown) => Buffer.from(JSON.stringify(o));
  const decode = (b: Uint8Array) => JSON.parse(Buffer.from(b).toString("utf8")) as Record<string, unknown>;

  it("sets the rank on paths that take priority, overriding the client's, and leaves others without it", () => {
    const fields = { model: "m", priority: -100 };
    expect(decode(engineBody(body(fields), fields, "/v1/chat/completions", true, 4))).toEqual({ model: "m", priority: 4 });
    expect(decode(engineBody(body(fields), fields, "/v1/embeddings", true, null))).toEqual({ model: "m", priority: 3 });
    expect(decode(engineBody(body(fields), fields, "/tokenize", true, 4))).toEqual({ model: "m" });
    expect(decode(engineBody(body(fields), fields, "/v1/chat/completions", false, 4))).toEqual({ model: "m" });
  });

  it("passes a body that needs no change through as the same bytes", () => {
    const fields = { model: "m" };
    const raw = body(fields);
    expect(engineBody(raw, fields, "/v1/chat/completions", false, 2)).toBe(raw);
    const ranked = { model: "m", priority: 2 };
    const rankedRaw = body(ranked);
    expect(engineBody(rankedRaw, ranked, "/v1/completions", true, 2)).toBe(rankedRaw);
  });
});

describe("configuration", () => {
  it("reads priority=1 on an engine spec and refuses other values", () => {
    const config = (engines: string) => parseConfig({ nodeId: NODE_ID, region: "test", secret: SECRET, engines });
    expect(config("kind=vllm,url=http://127.0.0.1:8000,priority=1").engines[0]?.priorityScheduling).toBe(true);
    expect(config("kind=vllm,url=http://127.0.0.1:8000").engines[0]?.priorityScheduling).toBe(false);
    expect(() => config("kind=vllm,url=http://127.0.0.1:8000,priority=high")).toThrow(ConfigError);
  });
});

describe("the backplane's own slot queue", () => {
  it("lets waiters in by rank, lower first, in arrival order within a rank", async () => {
    const limiter = new ConcurrencyLimiter(1, 10);
    const first = await limiter.tryAcquire();
    const order: string[] = [];
    const queued = [
      ["batch-a", 5],
      ["interactive-a", 1],
      ["batch-b", 5],
      ["interactive-b", 1],
      ["standard", 3],
    ] as const;
    const waits = queued.map(([label, rank]) => {
      const wait = limiter.tryAcquire(undefined, rank);
      if (!wait) throw new Error(`${label} was shed`);
      return wait.then((outcome) => {
        order.push(label);
        if (outcome.ok) outcome.release();
      });
    });
    expect(limiter.queued).toBe(5);
    if (first?.ok) first.release();
    await Promise.all(waits);
    expect(order).toEqual(["interactive-a", "interactive-b", "standard", "batch-a", "batch-b"]);
  });
});
