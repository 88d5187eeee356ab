/**
 * End to end: the response and embeddings caches (docs/caching.md) on the real local stack, driven by
 * the official `openai` client. What reached the GPU is read from the simulated engine's own counters
 * (/metrics), never from the gateway's internals.
 */
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDb, type NodeDb } from "../../dev/db.ts";
import type { Stack } from "../../dev/stack.ts";
import { startTestStack, type TestStack } from "../support/e2e-stack.ts";
import { adminJson, newTenantKey, usageRowOf } from "../support/e2e-calls.ts";

let stack: Stack;
let started: TestStack;
let db: NodeDb;

beforeAll(async () => {
  started = await startTestStack("cache", { simArgs: ["--ttft-ms", "5", "--inter-token-ms", "2"] });
  stack = started.stack;
  db = openDb(started.databaseUrl);
}, 120_000);

afterAll(async () => {
  await db?.close();
  await started?.close();
});

/** A client for a tenant of its own (the caches are per tenant). */
async function tenantClient(name: string): Promise<{ client: OpenAI; tenantId: string }> {
  const { key, tenantId } = await newTenantKey(stack, name);
  return { client: new OpenAI({ baseURL: `${stack.gatewayUrl}/v1`, apiKey: key, maxRetries: 0 }), tenantId };
}

/** The engine's counters for a model: requests it finished and prompt tokens it processed. */
async function engine(model: string): Promise<{ requests: number; promptTokens: number }> {
  const text = await (await fetch(`${stack.simUrl}/metrics`)).text();
  const sum = (metric: string) =>
    text
      .split("\n")
      .filter((line) => line.startsWith(`${metric}{`) && line.includes(`model_name="${model}"`))
      .reduce((s, line) => s + Number(line.slice(line.lastIndexOf(" ") + 1)), 0);
  return { requests: sum("vllm:request_success_total"), promptTokens: sum("vllm:prompt_tokens_total") };
}

const chatRequest = (content: string) => ({ model: "sim-llama-8b", messages: [{ role: "user" as const, content }], max_tokens: 8, temperature: 0 });

describe("response cache through the openai client", () => {
  it("answers a repeated deterministic chat request without the GPU, saying hit, miss or bypass", async () => {
    const { client } = await tenantClient("cache-chat");
    const before = await engine("sim-llama-8b");
    const first = await client.chat.completions.create(chatRequest("What is a cache?")).withResponse();
    expect(first.response.headers.get("x-switchyard-cache")).toBe("miss");
    const second = await client.chat.completions.create(chatRequest("What is a cache?")).withResponse();
    expect(second.response.headers.get("x-switchyard-cache")).toBe("hit");
    expect(second.response.headers.get("x-switchyard-node")).toBeNull();
    expect(second.data.choices).toEqual(first.data.choices);
    expect(second.data.usage).toEqual(first.data.usage);
    expect((await engine("sim-llama-8b")).requests).toBe(before.requests + 1);
    // Sampled requests are never cached.
    const sampled = await client.chat.completions.create({ ...chatRequest("What is a cache?"), temperature: 0.7 }).withResponse();
    expect(sampled.response.headers.get("x-switchyard-cache")).toBe("bypass");
    expect((await engine("sim-llama-8b")).requests).toBe(before.requests + 2);
  });

  it("replays a streamed answer with the same chunks as the live stream (usage chunk only when asked)", async () => {
    const { client } = await tenantClient("cache-stream");
    const request = { ...chatRequest("Stream it twice"), stream: true as const, stream_options: { include_usage: true } };
    const collect = async (params: typeof request | (Omit<typeof request, "stream_options"> & { stream_options?: undefined })) => {
      const { data, response } = await client.chat.completions.create(params).withResponse();
      const chunks: unknown[] = [];
      for await (const chunk of data) chunks.push({ ...chunk, id: "id", created: 0 });
      return { chunks, cache: response.headers.get("x-switchyard-cache") };
    };
    const before = await engine("sim-llama-8b");
    const live = await collect(request);
    const replay = await collect(request);
    expect([live.cache, replay.cache]).toEqual(["miss", "hit"]);
    expect(replay.chunks).toEqual(live.chunks);
    expect(live.chunks.length).toBeGreaterThan(3);
    const withoutUsage = await collect({ ...request, stream_options: undefined });
    expect(withoutUsage.cache).toBe("hit");
    expect(withoutUsage.chunks).toEqual(live.chunks.slice(0, -1));
    // The same request not streamed is the same answer, from the same entry.
    const json = await client.chat.completions.create(chatRequest("Stream it twice")).withResponse();
    expect(json.response.headers.get("x-switchyard-cache")).toBe("hit");
    const streamedText = (live.chunks as { choices: { delta?: { content?: string | null } }[] }[]).map((c) => c.choices[0]?.delta?.content ?? "").join("");
    expect(json.data.choices[0]?.message.content).toBe(streamedText);
    expect((await engine("sim-llama-8b")).requests).toBe(before.requests + 1);
  });

  it("honours Cache-Control no-cache and no-store, and keeps tenants apart", async () => {
    const a = await tenantClient("cache-a");
    const b = await tenantClient("cache-b");
    const header = (h: string) => ({ headers: { "cache-control": h } });
    const cacheOf = async (client: OpenAI, content: string, opts = {}) => (await client.chat.completions.create(chatRequest(content), opts).withResponse()).response.headers.get("x-switchyard-cache");
    const before = await engine("sim-llama-8b");
    expect(await cacheOf(a.client, "directives", header("no-store"))).toBe("bypass");
    expect(await cacheOf(a.client, "directives")).toBe("miss");
    expect(await cacheOf(a.client, "directives", header("no-cache"))).toBe("miss");
    expect(await cacheOf(a.client, "directives", header("no-store"))).toBe("bypass");
    expect(await cacheOf(a.client, "directives")).toBe("hit");
    expect((await engine("sim-llama-8b")).requests).toBe(before.requests + 4);
    // Tenant B asks the very same thing: its own miss, then its own hit.
    expect(await cacheOf(b.client, "directives")).toBe("miss");
    expect(await cacheOf(b.client, "directives")).toBe("hit");
    expect((await engine("sim-llama-8b")).requests).toBe(before.requests + 5);
  });

  it("is off for an environment whose cache_enabled is false", async () => {
    const { key, tenantId } = await newTenantKey(stack, "cache-off");
    const client = new OpenAI({ baseURL: `${stack.gatewayUrl}/v1`, apiKey: key, maxRetries: 0 });
    const envs = await adminJson<{ data: { id: string }[] }>(stack, "GET", `/environments?tenant_id=${tenantId}`);
    const envId = envs.data[0]?.id ?? "";
    expect(await adminJson(stack, "PATCH", `/environments/${envId}`, { cache_enabled: false })).toMatchObject({ cache_enabled: false });
    const before = await engine("sim-llama-8b");
    for (let i = 0; i < 2; i++) {
      const res = await client.chat.completions.create(chatRequest("env off")).withResponse();
      expect(res.response.headers.get("x-switchyard-cache")).toBe("bypass");
    }
    expect((await engine("sim-llama-8b")).requests).toBe(before.requests + 2);
  });

  it("meters a hit with cache_hit, the answer's tokens as cached prompt tokens and the catalogue's hit price", async () => {
    const { client } = await tenantClient("cache-meter");
    const miss = await client.chat.completions.create(chatRequest("meter the hit")).withResponse();
    const hit = await client.chat.completions.create(chatRequest("meter the hit")).withResponse();
    await adminJson(stack, "PUT", "/models/sim-llama-8b", { cache_hit_price_factor: 0.5 });
    let paid: Response | undefined;
    try {
      // The catalogue reaches the gateway with the routing snapshot (dropped by the admin call).
      for (let i = 0; i < 20; i++) {
        const res = await client.chat.completions.create(chatRequest("meter the hit")).withResponse();
        const row = await usageRowOf(stack, db, res.response.headers.get("x-request-id"));
        if (row.costMicros > 0) {
          paid = res.response;
          break;
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    } finally {
      await adminJson(stack, "PUT", "/models/sim-llama-8b", { cache_hit_price_factor: 0 });
    }
    const missRow = await usageRowOf(stack, db, miss.response.headers.get("x-request-id"));
    const hitRow = await usageRowOf(stack, db, hit.response.headers.get("x-request-id"));
    const usage = miss.data.usage;
    expect(missRow).toMatchObject({ cacheHit: false, nodeId: stack.nodeId, promptTokens: usage?.prompt_tokens, completionTokens: usage?.completion_tokens });
    expect(missRow.costMicros).toBeGreaterThan(0);
    expect(hitRow).toMatchObject({ cacheHit: true, nodeId: null, status: "ok", promptTokens: usage?.prompt_tokens, cachedPromptTokens: usage?.prompt_tokens, completionTokens: usage?.completion_tokens, costMicros: 0 });
    expect(paid).toBeDefined();
    const paidRow = await usageRowOf(stack, db, paid?.headers.get("x-request-id"));
    expect(paidRow).toMatchObject({ cacheHit: true, costMicros: Math.round(missRow.costMicros * 0.5) });
  });
});

describe("embeddings cache through the openai client", () => {
  it("sends only the inputs not cached to the GPU and answers a fully cached batch without it", async () => {
    const { client } = await tenantClient("cache-embed");
    const single = await client.embeddings.create({ model: "sim-embed", input: "the middle one" }, { headers: { "cache-control": "no-store" } });
    const middleTokens = single.usage.prompt_tokens;
    await client.embeddings.create({ model: "sim-embed", input: ["first text", "last text"] });
    const before = await engine("sim-embed");
    const { data, response } = await client.embeddings.create({ model: "sim-embed", input: ["first text", "the middle one", "last text"] }).withResponse();
    expect(response.headers.get("x-switchyard-cache")).toBe("miss");
    expect(response.headers.get("x-switchyard-cache-inputs")).toBe("2/3");
    const after = await engine("sim-embed");
    // One engine request, with only the middle input's tokens.
    expect(after.requests).toBe(before.requests + 1);
    expect(after.promptTokens - before.promptTokens).toBe(middleTokens);
    expect(data.usage.prompt_tokens).toBe(middleTokens);
    expect(data.data.map((d) => d.index)).toEqual([0, 1, 2]);
    expect(data.data[1]?.embedding).toEqual(single.data[0]?.embedding);
    // Everything cached now: no engine request at all.
    const all = await client.embeddings.create({ model: "sim-embed", input: ["last text", "first text", "the middle one"] }).withResponse();
    expect(all.response.headers.get("x-switchyard-cache")).toBe("hit");
    expect((await engine("sim-embed")).requests).toBe(after.requests);
    expect(all.data.data.map((d) => d.embedding)).toEqual([data.data[2]?.embedding, data.data[0]?.embedding, data.data[1]?.embedding]);
    const row = await usageRowOf(stack, db, all.response.headers.get("x-request-id"));
    expect(row).toMatchObject({ cacheHit: true, nodeId: null, costMicros: 0 });
    expect(row.cachedPromptTokens).toBe(row.promptTokens);
    expect(row.promptTokens).toBeGreaterThan(0);
  });
});
