/**
 * Priority classes end to end (docs/priority.md): the local stack with one simulated engine running
 * vLLM's priority scheduling one sequence at a time, its backplane passing the gateway's rank as
 * `priority`, and the official `openai` client as the caller. With the engine busy, a batch request
 * queued first and an interactive one queued second: the interactive one finishes first.
 */
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Stack } from "../../dev/stack.ts";
import { startTestStack, type TestStack } from "../support/e2e-stack.ts";

const MODEL = "sim-llama-8b";
const messages = [{ role: "user" as const, content: "Who goes first?" }];
let started: TestStack;
let stack: Stack;
let keys: { batch: string; interactive: string; standard: string };

async function admin<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${stack.gatewayUrl}/admin${path}`, {
    method,
    headers: { authorization: `Bearer ${stack.adminToken}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = (await res.json()) as T;
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

function client(apiKey: string): OpenAI {
  return new OpenAI({ baseURL: `${stack.gatewayUrl}/v1`, apiKey, maxRetries: 0, timeout: 60_000 });
}

/** Requests waiting in the engine's queue (vllm:num_requests_waiting). */
async function engineWaiting(): Promise<number> {
  const text = await (await fetch(`${stack.simUrl}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`vllm:num_requests_waiting{model_name="${MODEL}"`));
  return Number(line?.slice(line.lastIndexOf(" ") + 1) ?? "NaN");
}

async function untilWaiting(n: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  while ((await engineWaiting()) < n) {
    if (Date.now() > deadline) throw new Error(`the engine never had ${n} waiting`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

beforeAll(async () => {
  started = await startTestStack("priority", {
    simArgs: ["--scheduling-policy", "priority", "--max-concurrency", "1", "--ttft-ms", "5", "--inter-token-ms", "10", "--output-tokens", "1000"],
  });
  stack = started.stack;
  const tenant = await admin<{ id: string }>("POST", "/tenants", { name: "priority-e2e" });
  const env = await admin<{ id: string }>("POST", "/environments", { tenant_id: tenant.id, name: "prod", priority_class: "interactive" });
  const key = async (name: string, priority_class?: string) => (await admin<{ key: string }>("POST", "/keys", { environment_id: env.id, name, priority_class })).key;
  keys = { interactive: await key("chat-app"), batch: await key("nightly", "batch"), standard: await key("tools", "standard") };
}, 240_000);

afterAll(async () => {
  await started?.close();
});

describe("priority classes on a priority-scheduled engine", () => {
  it("finishes an interactive request queued after a batch one first", async () => {
    // Occupies the engine's one slot: a standard stream, running once its first chunk is in.
    const blocker = await client(keys.standard).chat.completions.create({ model: MODEL, messages, max_tokens: 150, stream: true });
    const blockerDone = (async () => {
      let chunks = 0;
      for await (const chunk of blocker) if (chunk.choices[0]?.delta.content) chunks++;
      return chunks;
    })();
    await untilWaiting(0);

    const finished: string[] = [];
    const batch = client(keys.batch)
      .chat.completions.create({ model: MODEL, messages, max_tokens: 3 })
      .withResponse()
      .then(({ response }) => {
        finished.push("batch");
        return response.headers.get("x-switchyard-priority");
      });
    await untilWaiting(1);
    const interactive = client(keys.interactive)
      .chat.completions.create({ model: MODEL, messages, max_tokens: 3 })
      .withResponse()
      .then(({ response }) => {
        finished.push("interactive");
        return response.headers.get("x-switchyard-priority");
      });
    await untilWaiting(2);

    expect(await blockerDone).toBeGreaterThan(0);
    expect(await Promise.all([batch, interactive])).toEqual(["batch", "interactive"]);
    expect(finished).toEqual(["interactive", "batch"]);
  }, 60_000);

  it("lets a request lower itself to batch with the header, behind a standard one", async () => {
    const blocker = await client(keys.standard).chat.completions.create({ model: MODEL, messages, max_tokens: 150, stream: true });
    const blockerDone = (async () => {
      for await (const chunk of blocker) void chunk;
    })();
    const finished: string[] = [];
    const lowered = client(keys.interactive)
      .chat.completions.create({ model: MODEL, messages, max_tokens: 3 }, { headers: { "x-switchyard-priority": "batch" } })
      .then(() => finished.push("lowered"));
    await untilWaiting(1);
    const standard = client(keys.standard)
      .chat.completions.create({ model: MODEL, messages, max_tokens: 3 })
      .then(() => finished.push("standard"));
    await untilWaiting(2);
    await Promise.all([blockerDone, lowered, standard]);
    expect(finished).toEqual(["standard", "lowered"]);
  }, 60_000);
});
