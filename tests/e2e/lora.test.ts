/**
 * End to end: LoRA adapters through the local stack (wrangler dev + backplane + simulated vLLM with
 * `--lora sql=sim-llama-8b --runtime-lora` + Postgres + Redis), with the official `openai` client:
 * an adapter the engine serves is answered and metered at its own catalogue price; one no node has
 * is loaded on first use through the gateway and then served; admin unload and load go through the
 * gateway's API to the node.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { and, eq, sql } from "drizzle-orm";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDb, type NodeDb } from "../../dev/db.ts";
import type { Stack } from "../../dev/stack.ts";
import { auditLogs } from "../../schema/tables/index.ts";
import { startTestStack, type TestStack } from "../support/e2e-stack.ts";
import { usageRowOf } from "../support/e2e-calls.ts";

let started: TestStack;
let stack: Stack;
let db: NodeDb;
let client: OpenAI;

const BASE = "sim-llama-8b";
/** Served by the engine from the start (--lora). */
const SQL = "sql";
/** Loaded on demand from its catalogue adapter_source. */
const ON_DEMAND = "sql-v2";
/** The adapter's own prices (the base's are 0.1 / 0.2): USD per million tokens, so tokens × price is micro-USD. */
const PRICE = { input: 7, output: 11 };

async function admin<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(`${stack.gatewayUrl}/admin${path}`, {
    method,
    headers: { authorization: `Bearer ${stack.adminToken}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as T };
}

/** Runs the admin CLI against the stack as `npm run admin` does; resolves with its output, or rejects on a non-zero exit. */
async function cli(args: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)(process.execPath, ["worker/cli/admin.ts", ...args, "--url", stack.gatewayUrl, "--token", stack.adminToken], {
    env: { ...process.env, SWITCHYARD_ADMIN_TOKEN: "", SWITCHYARD_URL: "" },
  });
  return stdout.trim();
}

async function engineModels(): Promise<string[]> {
  return ((await (await fetch(`${stack.simUrl}/v1/models`)).json()) as { data: { id: string }[] }).data.map((m) => m.id);
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, withinMs = 30_000): Promise<T> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const value = await fn().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what} not reached within ${withinMs} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const usageFor = (requestId: string | null | undefined) => usageRowOf(stack, db, requestId);

beforeAll(async () => {
  started = await startTestStack("lora", { simArgs: ["--ttft-ms", "5", "--inter-token-ms", "2", "--lora", `${SQL}=${BASE}`, "--runtime-lora"] });
  stack = started.stack;
  db = openDb(started.databaseUrl);
  client = new OpenAI({ baseURL: `${stack.gatewayUrl}/v1`, apiKey: stack.apiKey, maxRetries: 0 });
  expect((await admin("PUT", `/models/${SQL}`, { base_model: BASE, input_price_per_m_tokens: PRICE.input, output_price_per_m_tokens: PRICE.output })).status).toBe(201);
  expect((await admin("PUT", `/models/${ON_DEMAND}`, { base_model: BASE, adapter_source: `/data/adapters/${ON_DEMAND}` })).status).toBe(201);
  // The catalogue change and the node's adapter reach routing within a heartbeat or two.
  await until("the adapter routable", async () => ((await client.chat.completions.create({ model: SQL, messages: [{ role: "user", content: "warm up" }], max_tokens: 1 })).model === SQL ? true : undefined));
}, 120_000);

afterAll(async () => {
  await db?.close();
  await started?.close();
});

describe("LoRA adapters through the local stack", () => {
  it("lists adapters with their base as parent in /v1/models", async () => {
    const listed = (await client.models.list()).data as unknown as { id: string; parent: string | null; available: boolean }[];
    expect(listed.find((m) => m.id === SQL)).toMatchObject({ parent: BASE, available: true });
    expect(listed.find((m) => m.id === ON_DEMAND)).toMatchObject({ parent: BASE, available: true });
    expect(listed.find((m) => m.id === BASE)?.parent).toBeNull();
  });

  it("answers an adapter with the openai client, streamed and not, metered at the adapter's own price", async () => {
    const { data: completion, response } = await client.chat.completions
      .create({ model: SQL, messages: [{ role: "user", content: "Count the orders" }], max_tokens: 8 })
      .withResponse();
    expect(completion.model).toBe(SQL);
    const usage = completion.usage;
    if (!usage) throw new Error("no usage");
    const row = await usageFor(response.headers.get("x-request-id"));
    expect(row).toMatchObject({ model: SQL, status: "ok", promptTokens: usage.prompt_tokens, completionTokens: usage.completion_tokens });
    expect(row.costMicros).toBe(usage.prompt_tokens * PRICE.input + usage.completion_tokens * PRICE.output);

    const { data: stream, response: streamed } = await client.chat.completions
      .create({ model: SQL, messages: [{ role: "user", content: "Count the orders" }], max_tokens: 8, stream: true, stream_options: { include_usage: true } })
      .withResponse();
    const models = new Set<string>();
    let streamUsage: OpenAI.CompletionUsage | null | undefined = null;
    for await (const chunk of stream) {
      models.add(chunk.model);
      if (chunk.usage) streamUsage = chunk.usage;
    }
    expect([...models]).toEqual([SQL]);
    const streamRow = await usageFor(streamed.headers.get("x-request-id"));
    expect(streamRow.costMicros).toBe((streamUsage?.prompt_tokens ?? -1) * PRICE.input + (streamUsage?.completion_tokens ?? -1) * PRICE.output);
  });

  it("loads an adapter no node has on first use, then serves it from the node", async () => {
    expect(await engineModels()).not.toContain(ON_DEMAND);
    const { data: first, response } = await client.chat.completions.create({ model: ON_DEMAND, messages: [{ role: "user", content: "hi" }], max_tokens: 2 }).withResponse();
    expect(first.model).toBe(ON_DEMAND);
    expect(response.headers.get("x-switchyard-node")).toBe(stack.nodeId);
    expect(await engineModels()).toContain(ON_DEMAND);
    // Metered at the base's prices, which the adapter took when it was created without its own.
    const row = await usageFor(response.headers.get("x-request-id"));
    const usage = first.usage;
    expect(row.costMicros).toBe(Math.round((usage?.prompt_tokens ?? 0) * 0.1 + (usage?.completion_tokens ?? 0) * 0.2));
    for (let i = 0; i < 3; i++) expect((await client.chat.completions.create({ model: ON_DEMAND, messages: [{ role: "user", content: "again" }], max_tokens: 2 })).model).toBe(ON_DEMAND);
    // The node's heartbeat lists it: ordinary routing serves it from now on.
    await until("the node's live state to list the adapter", async () => {
      const nodes = await admin<{ data: { id: string; adapters: { name: string }[] }[] }>("GET", "/nodes");
      return nodes.body.data.find((n) => n.id === stack.nodeId)?.adapters.some((a) => a.name === ON_DEMAND) === true ? true : undefined;
    });
    await stack.runScheduled();
    const loads = await db.db.select().from(auditLogs).where(and(eq(auditLogs.action, "node.adapter_load"), sql`${auditLogs.details}->>'adapter' = ${ON_DEMAND}`));
    expect(loads.map((l) => [l.actor, l.targetId])).toEqual([["gateway", stack.nodeId]]);
  });

  it("unloads and loads an adapter on a node through the admin API", async () => {
    const listed = await admin<{ data: { name: string; base: string }[] }>("GET", `/nodes/${stack.nodeId}/adapters`);
    expect(listed.status).toBe(200);
    expect(listed.body.data).toContainEqual(expect.objectContaining({ name: SQL, base: BASE }));

    const unloaded = await admin("DELETE", `/nodes/${stack.nodeId}/adapters/${SQL}`);
    expect(unloaded).toMatchObject({ status: 200, body: { name: SQL, status: "unloaded" } });
    expect(await engineModels()).not.toContain(SQL);
    // No source in the catalogue for this one: once its node says it is gone, it is not served.
    await until("the gateway to stop routing the unloaded adapter", async () => {
      const status = await client.chat.completions.create({ model: SQL, messages: [{ role: "user", content: "hi" }], max_tokens: 1 }).then(
        (): unknown => 200,
        (err: unknown): unknown => (err instanceof OpenAI.APIError ? err.status : 0),
      );
      return status === 503 ? true : undefined;
    });

    const loaded = await admin("POST", `/nodes/${stack.nodeId}/adapters`, { name: SQL, source: "/data/adapters/sql" });
    expect(loaded).toMatchObject({ status: 200, body: { name: SQL, base: BASE, status: "loaded", node_id: stack.nodeId } });
    expect(await engineModels()).toContain(SQL);
    // Routing follows the node's heartbeat, which the backplane sends at once.
    const answer = await until<OpenAI.ChatCompletion>("the reloaded adapter served", () => client.chat.completions.create({ model: SQL, messages: [{ role: "user", content: "back" }], max_tokens: 2 }), 10_000);
    expect(answer.model).toBe(SQL);
    const audit = await db.db.select().from(auditLogs).where(and(eq(auditLogs.targetId, stack.nodeId), sql`${auditLogs.details}->>'adapter' = ${SQL}`));
    expect(audit.map((a) => a.action).sort()).toEqual(["node.adapter_load", "node.adapter_unload"]);
  });

  it("manages adapters with the admin CLI: catalogue entry, list, load and unload on a node", async () => {
    const created = JSON.parse(await cli(["model", "set", "sql-v3", "--base-model", BASE, "--adapter-source", "/data/adapters/sql-v3", "--json"])) as Record<string, unknown>;
    expect(created).toMatchObject({ id: "sql-v3", base_model: BASE, adapter_source: "/data/adapters/sql-v3", context_length: 8192, input_price_per_m_tokens: 0.1 });
    expect(await cli(["node", "adapter-load", stack.nodeId, "sql-v3"])).toBe(`Loaded sql-v3 on engine sim-0 of node ${stack.nodeId}.`);
    const table = (await cli(["node", "adapters", stack.nodeId])).split("\n").map((line) => line.trim().split(/\s{2,}/));
    expect(table[0]).toEqual(["ENGINE", "ADAPTER", "BASE", "SOURCE"]);
    expect(table).toContainEqual(["sim-0", "sql-v3", BASE, "/data/adapters/sql-v3"]);
    expect(await cli(["node", "adapter-unload", stack.nodeId, "sql-v3"])).toBe(`Unloaded sql-v3 from sim-0 on node ${stack.nodeId}.`);
    expect(await engineModels()).not.toContain("sql-v3");
  });
});
