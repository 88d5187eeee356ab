import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { inject } from "vitest";
import { apiKeys, usageRecords } from "../../schema/tables/index.ts";
import { hashApiKey } from "../../worker/src/auth/keys.ts";
import { createEnvironment, createTenant } from "../../worker/src/admin/store.ts";
import { keyCacheKey } from "../../worker/src/auth/identity.ts";
import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import worker from "../../worker/src/index.ts";
import { createApiKey, eventually, flushNow, gateway, post, query, redis, sseData } from "./helpers.ts";

const messages = [{ role: "user", content: "Tell me about switchyards" }];

function usageRow(requestId: string) {
  return eventually(async () => {
    await flushNow();
    return query(async (db) => (await db.select().from(usageRecords).where(eq(usageRecords.id, requestId)))[0]);
  });
}

describe("models", () => {
  it("lists the catalogue models a key may use", async () => {
    const res = await gateway("/v1/models");
    expect(res.status).toBe(200);
    const body = await res.json<{ object: string; data: { id: string; object: string; owned_by: string; available: boolean }[] }>();
    expect(body.object).toBe("list");
    // sim-embed:latest is sim-embed's alias (dev/seed.ts), listed as an entry of its own; the
    // built-in council follows the models (docs/council.md).
    expect(body.data.map((m) => m.id)).toEqual(["hb-model", "legacy-model", "sim-embed", "sim-embed:latest", "sim-llama-8b", "sim-whisper", "council/default"]);
    expect(body.data.every((m) => m.object === "model" && m.owned_by === "switchyard")).toBe(true);
    // No node serves hb-model until a test registers one, nor sim-whisper in this suite.
    expect(body.data.map((m) => m.available)).toEqual([false, true, true, true, true, false, true]);

    const limited = await (await gateway("/v1/models", { key: inject("keys").chatOnlyModel })).json<{ data: { id: string }[] }>();
    // Its one model is the one the built-in council asks, so the council is listed too.
    expect(limited.data.map((m) => m.id)).toEqual(["sim-llama-8b", "council/default"]);
  });
});

describe("non-streamed requests", () => {
  it("proxies a chat completion and records the engine's usage for the caller's tenant", async () => {
    const res = await post("/v1/chat/completions", { model: "sim-llama-8b", messages, max_tokens: 12 });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-switchyard-node")).toBe(inject("liveNodeId"));
    const body = await res.json<{ object: string; choices: { message: { content: string } }[]; usage: { prompt_tokens: number; completion_tokens: number } }>();
    expect(body.object).toBe("chat.completion");
    expect(body.usage.completion_tokens).toBe(12);
    const requestId = res.headers.get("x-request-id") ?? "";
    expect(requestId).toMatch(/^req_/);
    const row = await usageRow(requestId);
    expect(row).toMatchObject({
      tenantId: inject("tenantId"),
      model: "sim-llama-8b",
      nodeId: inject("liveNodeId"),
      status: "ok",
      httpStatus: 200,
      streamed: false,
      promptTokens: body.usage.prompt_tokens,
      completionTokens: 12,
      endpoint: "chat",
    });
    // 0.1 $/M input, 0.2 $/M output → micro-dollars = tokens × price.
    expect(row.costMicros).toBe(Math.round(body.usage.prompt_tokens * 0.1 + 12 * 0.2));
  });

  it("proxies completions and embeddings", async () => {
    const completion = await post("/v1/completions", { model: "sim-llama-8b", prompt: "Once upon a time" });
    expect(completion.status).toBe(200);
    const c = await completion.json<{ object: string; usage: { completion_tokens: number } }>();
    expect(c.object).toBe("text_completion");
    expect(c.usage.completion_tokens).toBe(16);

    const embedding = await post("/v1/embeddings", { model: "sim-embed", input: ["a", "b"] });
    expect(embedding.status).toBe(200);
    const e = await embedding.json<{ data: { embedding: number[] }[]; usage: { prompt_tokens: number } }>();
    expect(e.data).toHaveLength(2);
    const row = await usageRow(embedding.headers.get("x-request-id") ?? "");
    expect(row.promptTokens).toBe(e.usage.prompt_tokens);
    expect(row.completionTokens).toBe(0);
  });

  it("passes an engine's 400 through with its message", async () => {
    const res = await post("/v1/chat/completions", { model: "sim-llama-8b", messages, max_tokens: 100_000 });
    expect(res.status).toBe(400);
    const body = await res.json<{ error: { message: string } }>();
    expect(body.error.message).toContain("maximum context length");
  });
});

describe("streamed requests", () => {
  it("strips the usage chunk the client did not ask for, yet records the usage", async () => {
    const request = { model: "sim-llama-8b", messages, max_tokens: 8, seed: 7 };
    const reference = await (await post("/v1/chat/completions", request)).json<{ usage: { prompt_tokens: number } }>();

    // no-store: the seeded request again must reach the engine, not the response cache (docs/caching.md).
    const res = await gateway("/v1/chat/completions", { method: "POST", body: JSON.stringify({ ...request, stream: true }), headers: { "cache-control": "no-store" } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const events = sseData(await res.text());
    expect(events.at(-1)).toBe("[DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as { choices: unknown[]; usage?: unknown });
    expect(chunks.every((c) => c.choices.length > 0)).toBe(true);
    expect(chunks.some((c) => c.usage !== undefined)).toBe(false);

    const row = await usageRow(res.headers.get("x-request-id") ?? "");
    expect(row).toMatchObject({ streamed: true, status: "ok", promptTokens: reference.usage.prompt_tokens, completionTokens: 8 });
  });

  it("keeps the usage chunk when the client asked for it", async () => {
    const res = await post("/v1/chat/completions", { model: "sim-llama-8b", messages, max_tokens: 5, stream: true, stream_options: { include_usage: true } });
    const events = sseData(await res.text());
    const usageChunk = JSON.parse(events.at(-2) ?? "{}") as { choices: unknown[]; usage: { completion_tokens: number } };
    expect(usageChunk.choices).toEqual([]);
    expect(usageChunk.usage.completion_tokens).toBe(5);
  });

  it("ends with an in-band error and [DONE] when the engine reports an error mid-stream", async () => {
    const res = await post("/v1/chat/completions", { model: "sim-llama-8b", messages, stream: true, sim_fault: "error_mid_stream", sim_fault_after: 2 });
    expect(res.status).toBe(200);
    const events = sseData(await res.text());
    expect(events.at(-1)).toBe("[DONE]");
    expect(JSON.parse(events.at(-2) ?? "{}")).toHaveProperty("error");
    const row = await usageRow(res.headers.get("x-request-id") ?? "");
    expect(row.status).toBe("error");
  });

  it("ends with an in-band error and [DONE] when the engine dies mid-stream", async () => {
    const res = await post("/v1/chat/completions", { model: "sim-llama-8b", messages, stream: true, sim_fault: "drop_mid_stream", sim_fault_after: 3 });
    expect(res.status).toBe(200);
    const text = await res.text();
    const events = sseData(text);
    expect(events.at(-1)).toBe("[DONE]");
    const error = JSON.parse(events.at(-2) ?? "{}") as { error?: { message: string } };
    expect(error.error?.message).toMatch(/failed|stopped/);
    const row = await usageRow(res.headers.get("x-request-id") ?? "");
    expect(row.status).toBe("error");
    expect(row.completionTokens).toBeGreaterThanOrEqual(3);
  });
});

/**
 * A streamed chat request (sim-llama-8b unless `body` says otherwise) through the worker with STREAM_TAP=node; waits for its background work.
 * Sent with Cache-Control: no-store: a seeded request repeated would be a response-cache hit (docs/caching.md), and a
 * cacheable stream is read by the gateway to be stored; these tests are about the node's tap.
 */
async function nodeTapped(body: Record<string, unknown>): Promise<{ res: Response; text: string }> {
  const ctx = createExecutionContext();
  const request = new Request("http://gateway.test/v1/chat/completions", {
    method: "POST",
    headers: { authorization: `Bearer ${inject("keys").valid}`, "content-type": "application/json", "cache-control": "no-store" },
    body: JSON.stringify({ model: "sim-llama-8b", messages, stream: true, ...body }),
  });
  const res = await worker.fetch(request, { ...env, STREAM_TAP: "node" }, ctx);
  const text = await res.text();
  await waitOnExecutionContext(ctx);
  return { res, text };
}

describe("streams tapped by the node (STREAM_TAP=node)", () => {
  it("strips the usage chunk on the node and meters the node's report", async () => {
    const taken = async () => Number(/switchyard_backplane_stream_reports_total\{event="taken"\} (\d+)/.exec(await (await fetch(`${inject("liveBackplaneUrl")}/metrics`)).text())?.[1] ?? 0);
    const before = await taken();
    const reference = await (await post("/v1/chat/completions", { model: "sim-llama-8b", messages, max_tokens: 7, seed: 5 })).json<{ usage: { prompt_tokens: number } }>();
    const { res, text } = await nodeTapped({ max_tokens: 7, seed: 5 });
    expect(res.status).toBe(200);
    const events = sseData(text);
    expect(events.at(-1)).toBe("[DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as { choices: unknown[]; usage?: unknown });
    expect(chunks.every((c) => c.choices.length > 0 && c.usage === undefined)).toBe(true);
    const row = await usageRow(res.headers.get("x-request-id") ?? "");
    expect(row).toMatchObject({ streamed: true, status: "ok", promptTokens: reference.usage.prompt_tokens, completionTokens: 7 });
    // The node tapped it and gave its report.
    expect(await taken()).toBeGreaterThan(before);
  });

  it("passes the usage chunk on when the client asked for it", async () => {
    const { text } = await nodeTapped({ max_tokens: 4, stream_options: { include_usage: true } });
    const usageChunk = JSON.parse(sseData(text).at(-2) ?? "{}") as { choices: unknown[]; usage: { completion_tokens: number } };
    expect(usageChunk.choices).toEqual([]);
    expect(usageChunk.usage.completion_tokens).toBe(4);
  });

  it("ends a stream whose engine dies with the node's error event, metering the chunks the node delivered", async () => {
    const { res, text } = await nodeTapped({ sim_fault: "drop_mid_stream", sim_fault_after: 3 });
    const events = sseData(text);
    expect(events.at(-1)).toBe("[DONE]");
    expect(JSON.parse(events.at(-2) ?? "{}")).toMatchObject({ error: { code: "engine_stream_failed" } });
    const row = await usageRow(res.headers.get("x-request-id") ?? "");
    expect(row).toMatchObject({ status: "error", errorCode: "upstream_stream_error" });
    expect(row.completionTokens).toBeGreaterThanOrEqual(3);
  });
});

describe("streams of a node that does not report them (STREAM_TAP=node, an older backplane)", () => {
  // wtest-legacy is an engine the gateway reaches directly (tests/support/worker-services.ts): its
  // answers carry no x-switchyard-stream-report token, so the gateway taps the stream itself.
  it("strips the usage chunk and records the engine's usage, as with a reporting node", async () => {
    const request = { model: "legacy-model", messages, max_tokens: 6, seed: 3 };
    const reference = await (await post("/v1/chat/completions", request)).json<{ usage: { prompt_tokens: number } }>();
    const { res, text } = await nodeTapped({ model: "legacy-model", max_tokens: 6, seed: 3 });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-switchyard-node")).toBe("wtest-legacy");
    const events = sseData(text);
    expect(events.at(-1)).toBe("[DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as { choices: unknown[]; usage?: unknown });
    expect(chunks.every((c) => c.choices.length > 0 && c.usage === undefined)).toBe(true);
    const row = await usageRow(res.headers.get("x-request-id") ?? "");
    expect(row).toMatchObject({ streamed: true, status: "ok", nodeId: "wtest-legacy", promptTokens: reference.usage.prompt_tokens, completionTokens: 6 });
  });

  it("ends a stream its engine drops with the gateway's error event and counts the chunks delivered", async () => {
    const { res, text } = await nodeTapped({ model: "legacy-model", sim_fault: "drop_mid_stream", sim_fault_after: 3 });
    const events = sseData(text);
    expect(events.at(-1)).toBe("[DONE]");
    expect(JSON.parse(events.at(-2) ?? "{}")).toMatchObject({ error: { code: "upstream_error" } });
    const row = await usageRow(res.headers.get("x-request-id") ?? "");
    expect(row).toMatchObject({ status: "error", errorCode: "upstream_stream_error" });
    expect(row.completionTokens).toBeGreaterThanOrEqual(3);
  });
});

describe("routing and failover", () => {
  it("serves every request from the live node although a dead node is registered for the model", async () => {
    for (let i = 0; i < 4; i++) {
      const res = await post("/v1/chat/completions", { model: "sim-llama-8b", messages, max_tokens: 2 });
      expect(res.status).toBe(200);
      expect(res.headers.get("x-switchyard-node")).toBe(inject("liveNodeId"));
      await res.arrayBuffer();
    }
  });

  it("returns 502 or 503 in OpenAI's shape when no node can serve", async () => {
    const res = await post("/v1/chat/completions", { model: "sim-llama-8b", messages, sim_fault: "engine_error" });
    // The live node answers 503 (its engine failed every try), the dead one cannot be reached:
    // which of the two is reported depends on the order they were tried in.
    expect([502, 503]).toContain(res.status);
    const body = await res.json<{ error: { code: string; type: string } }>();
    expect(["upstream_error", "no_capacity"]).toContain(body.error.code);
    expect(body.error.type).toBe("api_error");
    // Admitted, never answered: its usage row says so, with no tokens and no cost.
    const row = await usageRow(res.headers.get("x-request-id") ?? "");
    expect(row).toMatchObject({ status: "error", httpStatus: res.status, errorCode: body.error.code, nodeId: null, promptTokens: 0, completionTokens: 0, costMicros: 0 });
  });
});

describe("key cache", () => {
  it("stops accepting a revoked key within the isolate cache time once the admin path clears Redis", async () => {
    const key = inject("keys").toRevoke;
    const first = await post("/v1/chat/completions", { model: "sim-llama-8b", messages, max_tokens: 1 }, key);
    expect(first.status).toBe(200);
    await first.arrayBuffer();

    const hash = await hashApiKey(key);
    const cachedInRedis = await redis().get(keyCacheKey(env.REDIS_PREFIX, hash));
    expect(cachedInRedis).toMatchObject({ entry: { found: true } });

    await query((db) => db.update(apiKeys).set({ revokedAt: new Date() }).where(eq(apiKeys.hash, hash)));
    await redis().del(keyCacheKey(env.REDIS_PREFIX, hash));
    await new Promise((r) => setTimeout(r, 1_100)); // KEY_CACHE_ISOLATE_SECONDS=1 in the test bindings
    const after = await post("/v1/chat/completions", { model: "sim-llama-8b", messages, max_tokens: 1 }, key);
    expect(after.status).toBe(401);
  });
});

describe("the hot path", () => {
  async function dbSessions(): Promise<number> {
    const res = await fetch(inject("statsUrl"));
    return (await res.json<{ connections: number }>()).connections;
  }

  it("opens no database session for ordinary requests once caches are warm (usage goes to the Redis buffer)", async () => {
    const body = { model: "sim-llama-8b", messages, max_tokens: 2 };
    await (await post("/v1/chat/completions", body)).arrayBuffer();
    await new Promise((r) => setTimeout(r, 300));
    const before = await dbSessions();
    for (let i = 0; i < 5; i++) {
      const res = await post("/v1/chat/completions", body);
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    }
    await new Promise((r) => setTimeout(r, 500));
    // Usage is queued in Redis; a key or routing lookup in Postgres would show up here.
    expect((await dbSessions()) - before).toBe(0);
  });
});

describe("region pinning", () => {
  it("never sends a pinned environment's traffic out of its region: 503 when the region has no node", async () => {
    const key = await query(async (db) => {
      const tenant = await createTenant(db, "test", { name: "pinned" });
      const environment = await createEnvironment(db, "test", { tenantId: tenant.id, name: "eu-only", pinnedRegion: "eu-nowhere" });
      return (await createApiKey(db, "test", { tenantId: tenant.id, environmentId: environment.id, name: "k" })).key;
    });
    const res = await post("/v1/chat/completions", { model: "sim-llama-8b", messages, max_tokens: 1 }, key);
    expect(res.status).toBe(503);
    expect((await res.json<{ error: { code: string } }>()).error.code).toBe("no_capacity");
  });
});
