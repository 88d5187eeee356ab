/**
 * End to end: OpenAI's Responses API through the local stack (wrangler dev + backplane + simulated
 * vLLM with its response store on + Postgres + Redis) driven by the official `openai` client:
 * answers, typed-event streams, metering, stored responses on the node that made them, and that
 * another organisation cannot use a response id.
 */
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDb, type NodeDb } from "../../dev/db.ts";
import type { Stack } from "../../dev/stack.ts";
import { startTestStack, type TestStack } from "../support/e2e-stack.ts";
import { adminJson, usageRowOf } from "../support/e2e-calls.ts";

let started: TestStack;
let stack: Stack;
let db: NodeDb;
let openai: OpenAI;

const usageFor = (requestId: string | null | undefined) => usageRowOf(stack, db, requestId);
const admin = <T = unknown>(method: string, path: string, body?: unknown) => adminJson<T>(stack, method, path, body);

beforeAll(async () => {
  // vLLM keeps responses only with its store on; the simulator reads the same variable.
  process.env.VLLM_ENABLE_RESPONSES_API_STORE = "1";
  started = await startTestStack("responses", { simArgs: ["--ttft-ms", "5", "--inter-token-ms", "5"] });
  stack = started.stack;
  db = openDb(started.databaseUrl);
  openai = new OpenAI({ baseURL: `${stack.gatewayUrl}/v1`, apiKey: stack.apiKey, maxRetries: 0 });
}, 120_000);

afterAll(async () => {
  delete process.env.VLLM_ENABLE_RESPONSES_API_STORE;
  await db?.close();
  await started?.close();
});

const MODEL = "sim-llama-8b";

describe("the Responses API through the gateway", () => {
  it("answers responses.create, with a gateway-made id naming its node, and meters the engine's usage", async () => {
    const { data, response } = await openai.responses.create({ model: MODEL, input: "What is a switchyard?", instructions: "Be brief.", max_output_tokens: 10 }).withResponse();
    expect(data.id).toMatch(/^resp_[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{22}$/);
    expect(data.output_text.length).toBeGreaterThan(0);
    expect(data.usage?.output_tokens).toBe(10);
    expect(response.headers.get("x-switchyard-node")).toBe(stack.nodeId);
    const row = await usageFor(response.headers.get("x-request-id"));
    expect(row).toMatchObject({ endpoint: "responses", status: "ok", streamed: false, promptTokens: data.usage?.input_tokens, completionTokens: 10 });
  });

  it("streams typed events the SDK's stream helper accepts, metered from response.completed", async () => {
    const stream = openai.responses.stream({ model: MODEL, input: "Count to five.", max_output_tokens: 7 });
    const deltas: string[] = [];
    stream.on("response.output_text.delta", (event) => deltas.push(event.delta));
    const final = await stream.finalResponse();
    expect(deltas.length).toBe(7);
    expect(final.usage?.output_tokens).toBe(7);
    const created = await openai.responses.retrieve(final.id);
    expect(created.usage).toEqual(final.usage);
  });

  it("keeps a stored response on its node: retrieve it, and continue it with previous_response_id", async () => {
    const first = await openai.responses.create({ model: MODEL, input: "Remember the word 'ballast'.", max_output_tokens: 5 });
    const again = await openai.responses.retrieve(first.id);
    expect(again).toMatchObject({ id: first.id, status: first.status, output_text: first.output_text });
    const { data: next, response } = await openai.responses.create({ model: MODEL, input: "Which word?", previous_response_id: first.id, max_output_tokens: 5 }).withResponse();
    // The stored turn is prepended by the engine: the continuation's prompt holds both turns.
    expect(next.usage?.input_tokens ?? 0).toBeGreaterThan((first.usage?.input_tokens ?? 0) + (first.usage?.output_tokens ?? 0));
    expect(await usageFor(response.headers.get("x-request-id"))).toMatchObject({ endpoint: "responses", promptTokens: next.usage?.input_tokens });
  });

  it("does not let another organisation retrieve, continue or cancel a response", async () => {
    const mine = await openai.responses.create({ model: MODEL, input: "Private note.", max_output_tokens: 3 });
    const tenant = await admin<{ id: string }>("POST", "/tenants", { name: `other-${Math.random().toString(16).slice(2, 8)}` });
    const env = await admin<{ id: string }>("POST", "/environments", { tenant_id: tenant.id, name: "prod" });
    const key = await admin<{ key: string }>("POST", "/keys", { environment_id: env.id, name: "k" });
    const other = new OpenAI({ baseURL: `${stack.gatewayUrl}/v1`, apiKey: key.key, maxRetries: 0 });
    await expect(other.responses.retrieve(mine.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(other.responses.create({ model: MODEL, input: "Tell me the note.", previous_response_id: mine.id })).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(other.responses.cancel(mine.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    // The owner still can.
    expect((await openai.responses.retrieve(mine.id)).id).toBe(mine.id);
  });

  it("meters a stream the engine broke off by what it delivered, and the SDK throws the error event", async () => {
    const body = { model: MODEL, input: "Go.", max_output_tokens: 30, stream: true, sim_fault: "drop_mid_stream", sim_fault_after: 4 };
    const res = await fetch(`${stack.gatewayUrl}/v1/responses`, { method: "POST", headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" }, body: JSON.stringify(body) });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain("event: response.created");
    expect(text.trimEnd().split("\n\n").at(-1)).toMatch(/^event: error\ndata: \{"type":"error","code":/);
    expect(text).not.toContain("[DONE]");
    expect(await usageFor(res.headers.get("x-request-id"))).toMatchObject({ endpoint: "responses", status: "error", completionTokens: 4 });
  });

  it("answers 410 naming the node once the node that stores a response is gone", async () => {
    const kept = await openai.responses.create({ model: MODEL, input: "Before the outage.", max_output_tokens: 3 });
    await stack.killNode(stack.nodeId);
    await expect
      .poll(async () => (await fetch(`${stack.gatewayUrl}/v1/responses/${kept.id}`, { headers: { authorization: `Bearer ${stack.apiKey}` } })).status, { timeout: 30_000, interval: 500 })
      .toBe(410);
    const res = await fetch(`${stack.gatewayUrl}/v1/responses/${kept.id}`, { headers: { authorization: `Bearer ${stack.apiKey}` } });
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("response_gone");
    expect(body.error.message).toContain(stack.nodeId);
  });
});
