import { describe, expect, it } from "vitest";
import { parseSimArgs } from "../../backplane/src/sim/args.ts";
import type { SimEngine } from "../../backplane/src/sim/index.ts";
import { simPost, sseEvents, useSimEngine } from "../support/sim-harness.ts";

// The simulated engine's --scheduling-policy (docs/simulator.md): vLLM's fcfs and priority.

const start = useSimEngine();
const MESSAGES = [{ role: "user", content: "Tell me about trains." }];

/** vllm:num_requests_waiting of the default generate model. */
async function waiting(sim: SimEngine): Promise<number> {
  const text = await (await fetch(`${sim.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith('vllm:num_requests_waiting{model_name="sim-llama-8b",engine="0"} '));
  return Number(line?.slice(line.lastIndexOf(" ") + 1) ?? "NaN");
}

async function waitForWaiting(sim: SimEngine, n: number): Promise<void> {
  const deadline = Date.now() + 5000;
  while ((await waiting(sim)) !== n) {
    if (Date.now() > deadline) throw new Error(`never ${n} waiting`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/**
 * Occupies the engine's one slot with a slow request, queues one request per priority (in the order
 * given, each seen waiting before the next is sent), and returns the labels in the order they finished.
 */
async function finishOrder(sim: SimEngine, queued: { label: string; priority?: number }[]): Promise<string[]> {
  const blocker = simPost(sim, "/v1/chat/completions", { messages: MESSAGES, max_tokens: 200, ignore_eos: true });
  await new Promise((resolve) => setTimeout(resolve, 20));
  const order: string[] = [];
  const pending: Promise<void>[] = [];
  for (const [i, q] of queued.entries()) {
    const body = { messages: MESSAGES, max_tokens: 1, ...(q.priority === undefined ? {} : { priority: q.priority }) };
    pending.push(
      simPost(sim, "/v1/chat/completions", body).then(async (res) => {
        expect(res.status).toBe(200);
        await res.text();
        order.push(q.label);
      }),
    );
    await waitForWaiting(sim, i + 1);
  }
  expect((await blocker).status).toBe(200);
  await Promise.all(pending);
  return order;
}

describe("--scheduling-policy priority", () => {
  it("runs waiting requests by priority, lower first, and in arrival order within a priority", async () => {
    const sim = await start({ schedulingPolicy: "priority", maxConcurrency: 1, interTokenMs: 5 });
    const order = await finishOrder(sim, [
      { label: "batch-1", priority: 5 },
      { label: "interactive-1", priority: 0 },
      { label: "batch-2", priority: 5 },
      { label: "default", priority: undefined },
      { label: "urgent", priority: -3 },
      { label: "standard", priority: 3 },
    ]);
    expect(order).toEqual(["urgent", "interactive-1", "default", "standard", "batch-1", "batch-2"]);
  });
});

describe("--scheduling-policy fcfs (the default)", () => {
  it("runs waiting requests in arrival order", async () => {
    const sim = await start({ maxConcurrency: 1, interTokenMs: 5 });
    const order = await finishOrder(sim, [{ label: "a" }, { label: "b", priority: 0 }, { label: "c" }]);
    expect(order).toEqual(["a", "b", "c"]);
  });

  it("refuses a non-zero priority with vLLM's 400", async () => {
    const sim = await start();
    const res = await simPost(sim, "/v1/chat/completions", { messages: MESSAGES, max_tokens: 2, priority: 5 });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: { message: "Got priority 5 but Priority scheduling is not enabled.", type: "BadRequestError", param: null, code: 400 } });
    const completion = await simPost(sim, "/v1/completions", { prompt: "hi", max_tokens: 2, priority: -1 });
    expect(completion.status).toBe(400);
    const embed = await simPost(sim, "/v1/embeddings", { model: "sim-embed", input: "hi", priority: 2 });
    expect(embed.status).toBe(400);
    expect(((await embed.json()) as { error: { message: string } }).error.message).toBe("Got priority 2 but Priority scheduling is not enabled.");
  });

  it("refuses it inside a stream whose 200 is already out, as vLLM does", async () => {
    const sim = await start();
    const res = await simPost(sim, "/v1/chat/completions", { messages: MESSAGES, max_tokens: 2, priority: 1, stream: true });
    expect(res.status).toBe(200);
    const events = await sseEvents(res);
    expect(events.at(-1)).toBe("[DONE]");
    expect(JSON.parse(events[0] ?? "{}")).toEqual({ error: { message: "Got priority 1 but Priority scheduling is not enabled.", type: "BadRequestError", param: null, code: 400 } });
  });

  it("accepts priority 0, vLLM's default", async () => {
    const sim = await start();
    const res = await simPost(sim, "/v1/chat/completions", { messages: MESSAGES, max_tokens: 2, priority: 0 });
    expect(res.status).toBe(200);
  });
});

describe("the flag", () => {
  it("parses --scheduling-policy and SIM_SCHEDULING_POLICY, fcfs by default", () => {
    expect(parseSimArgs([], {}).schedulingPolicy).toBe("fcfs");
    expect(parseSimArgs(["--scheduling-policy", "priority"], {}).schedulingPolicy).toBe("priority");
    expect(parseSimArgs([], { SIM_SCHEDULING_POLICY: "priority" }).schedulingPolicy).toBe("priority");
    expect(() => parseSimArgs(["--scheduling-policy=lifo"], {})).toThrow('--scheduling-policy: expected fcfs or priority, got "lifo"');
  });
});
