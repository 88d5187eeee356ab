import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { eq, inArray } from "drizzle-orm";
import { beforeEach, describe, expect, it } from "vitest";
import { environments, models, usageHourly, usageRecords } from "../../schema/tables/index.ts";
import { createEnvironment, createTenant } from "../../worker/src/admin/store.ts";
import { tenantIndexKeys } from "../../worker/src/cache/store.ts";
import worker from "../../worker/src/index.ts";
import { clearIsolateCaches } from "../../worker/src/platform/hot-state.ts";
import { routingCacheKey } from "../../worker/src/routing/snapshot.ts";
import { admin } from "./admin-helpers.ts";
import { createApiKey, flushNow, query, redis, sseData } from "./helpers.ts";

type Bindings = typeof env;

interface Answer {
  status: number;
  cache: string | null;
  inputs: string | null;
  node: string | null;
  requestId: string;
  text: string;
}

/** Calls the worker and waits for the request's waitUntil work (the cache writes among it). */
async function call(key: string, path: string, body: unknown, headers: Record<string, string> = {}, bindings: Bindings = env): Promise<Answer> {
  const ctx = createExecutionContext();
  const res = await worker.fetch(
    new Request(`http://gateway.test${path}`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...headers }, body: JSON.stringify(body) }),
    bindings,
    ctx,
  );
  const text = await res.text();
  await waitOnExecutionContext(ctx);
  return { status: res.status, cache: res.headers.get("x-switchyard-cache"), inputs: res.headers.get("x-switchyard-cache-inputs"), node: res.headers.get("x-switchyard-node"), requestId: res.headers.get("x-request-id") ?? "", text };
}

/** A tenant of its own (caches are per tenant), with one environment and key. */
async function freshTenant(opts: { cacheEnabled?: boolean } = {}): Promise<{ key: string; tenantId: string; environmentId: string }> {
  return query(async (db) => {
    const tenant = await createTenant(db, "test", { name: `cache-${crypto.randomUUID().slice(0, 8)}` });
    const environment = await createEnvironment(db, "test", { tenantId: tenant.id, name: "prod", cacheEnabled: opts.cacheEnabled ?? true });
    const key = await createApiKey(db, "test", { tenantId: tenant.id, environmentId: environment.id, name: "k" });
    return { key: key.key, tenantId: tenant.id, environmentId: environment.id };
  });
}

const chat = (content: string, extra: Record<string, unknown> = {}) => ({ model: "sim-llama-8b", messages: [{ role: "user", content }], max_tokens: 6, temperature: 0, ...extra });
const json = <T>(a: Answer): T => JSON.parse(a.text) as T;
interface ChatBody {
  id: string;
  choices: { message: { content: string }; finish_reason: string }[];
  usage: { prompt_tokens: number; completion_tokens: number };
}
interface EmbeddingBody {
  data: { index: number; embedding: number[] }[];
  usage: { prompt_tokens: number };
}

async function rowsOf(ids: string[]) {
  await flushNow();
  return query((db) => db.select().from(usageRecords).where(inArray(usageRecords.id, ids)));
}

beforeEach(() => clearIsolateCaches());

describe("response cache", () => {
  it("answers a repeated temperature-0 chat request from the cache: miss then hit, same answer, no node, new id", async () => {
    const { key } = await freshTenant();
    const first = await call(key, "/v1/chat/completions", chat("cache me"));
    expect(first.status).toBe(200);
    expect(first.cache).toBe("miss");
    expect(first.node).not.toBeNull();
    const second = await call(key, "/v1/chat/completions", chat("cache me"));
    expect(second.status).toBe(200);
    expect(second.cache).toBe("hit");
    expect(second.node).toBeNull();
    const a = json<ChatBody>(first);
    const b = json<ChatBody>(second);
    expect(b.choices).toEqual(a.choices);
    expect(b.usage).toEqual(a.usage);
    expect(b.id).toBe(`chatcmpl-${second.requestId}`);
    // Fields that change nothing (user, stream_options absent) share the entry; another prompt does not.
    expect((await call(key, "/v1/chat/completions", chat("cache me", { user: "someone" }))).cache).toBe("hit");
    expect((await call(key, "/v1/chat/completions", chat("cache me too"))).cache).toBe("miss");
  });

  it("bypasses requests that are not deterministic or may call tools, and keys seeds apart", async () => {
    const { key } = await freshTenant();
    const sampled = { model: "sim-llama-8b", messages: [{ role: "user", content: "x" }], max_tokens: 3 };
    expect((await call(key, "/v1/chat/completions", sampled)).cache).toBe("bypass");
    expect((await call(key, "/v1/chat/completions", sampled)).cache).toBe("bypass");
    const tools = [{ type: "function", function: { name: "lookup", parameters: { type: "object", properties: {} } } }];
    expect((await call(key, "/v1/chat/completions", chat("t", { tools }))).cache).toBe("bypass");
    expect((await call(key, "/v1/chat/completions", chat("t", { tools, tool_choice: "none" }))).cache).toBe("miss");
    expect((await call(key, "/v1/chat/completions", chat("l", { logprobs: true }))).cache).toBe("bypass");
    expect((await call(key, "/v1/chat/completions", chat("c", { stream: true, stream_options: { include_usage: true, continuous_usage_stats: true } }))).cache).toBe("bypass");
    expect((await call(key, "/v1/chat/completions", chat("s", { temperature: 0.8, seed: 7 }))).cache).toBe("miss");
    expect((await call(key, "/v1/chat/completions", chat("s", { temperature: 0.8, seed: 7 }))).cache).toBe("hit");
    expect((await call(key, "/v1/chat/completions", chat("s", { temperature: 0.8, seed: 8 }))).cache).toBe("miss");
    // Routes without a cache say so.
    expect((await call(key, "/v1/messages", { model: "sim-llama-8b", max_tokens: 3, temperature: 0, messages: [{ role: "user", content: "m" }] })).cache).toBe("bypass");
  });

  it("serves completions from the cache too", async () => {
    const { key } = await freshTenant();
    const body = { model: "sim-llama-8b", prompt: "Once upon", max_tokens: 5, seed: 3 };
    const first = await call(key, "/v1/completions", body);
    const second = await call(key, "/v1/completions", body);
    expect([first.cache, second.cache]).toEqual(["miss", "hit"]);
    expect(json<{ choices: unknown[] }>(second).choices).toEqual(json<{ choices: unknown[] }>(first).choices);
  });

  it("honours Cache-Control: no-cache (fresh answer, stored) and no-store (neither read nor stored)", async () => {
    const { key } = await freshTenant();
    expect((await call(key, "/v1/chat/completions", chat("ns"), { "cache-control": "no-store" })).cache).toBe("bypass");
    expect((await call(key, "/v1/chat/completions", chat("ns"), { "cache-control": "no-store" })).cache).toBe("bypass");
    // Nothing was stored by no-store.
    expect((await call(key, "/v1/chat/completions", chat("ns"))).cache).toBe("miss");
    const fresh = await call(key, "/v1/chat/completions", chat("ns"), { "cache-control": "no-cache" });
    expect(fresh.cache).toBe("miss");
    expect(fresh.node).not.toBeNull();
    expect((await call(key, "/v1/chat/completions", chat("nc2"), { "cache-control": "no-cache" })).cache).toBe("miss");
    // no-cache stored its answer.
    expect((await call(key, "/v1/chat/completions", chat("nc2"))).cache).toBe("hit");
  });

  it("never serves one tenant's entry to another", async () => {
    const a = await freshTenant();
    const b = await freshTenant();
    expect((await call(a.key, "/v1/chat/completions", chat("shared prompt"))).cache).toBe("miss");
    expect((await call(a.key, "/v1/chat/completions", chat("shared prompt"))).cache).toBe("hit");
    expect((await call(b.key, "/v1/chat/completions", chat("shared prompt"))).cache).toBe("miss");
    expect((await call(b.key, "/v1/chat/completions", chat("shared prompt"))).cache).toBe("hit");
  });

  it("is off for an environment with cache_enabled false", async () => {
    const { key } = await freshTenant({ cacheEnabled: false });
    expect((await call(key, "/v1/chat/completions", chat("off"))).cache).toBe("bypass");
    const again = await call(key, "/v1/chat/completions", chat("off"));
    expect(again.cache).toBe("bypass");
    expect(again.node).not.toBeNull();
    expect((await call(key, "/v1/embeddings", { model: "sim-embed", input: "off" })).cache).toBe("bypass");
  });

  it("replays a streamed answer as the same chunks, and serves it to a non-streamed request (and back)", async () => {
    const { key } = await freshTenant();
    const body = chat("stream me", { stream: true, stream_options: { include_usage: true } });
    const live = await call(key, "/v1/chat/completions", body);
    const replay = await call(key, "/v1/chat/completions", body);
    expect([live.cache, replay.cache]).toEqual(["miss", "hit"]);
    const strip = (events: string[], id: string) => events.map((e) => (e === "[DONE]" ? e : JSON.stringify({ ...(JSON.parse(e) as object), id, created: 0 })));
    const liveEvents = sseData(live.text);
    const replayEvents = sseData(replay.text);
    expect(replayEvents.at(-1)).toBe("[DONE]");
    expect(strip(replayEvents, "x")).toEqual(strip(liveEvents, "x"));
    expect(JSON.parse(replayEvents[0] ?? "{}")).toMatchObject({ id: `chatcmpl-${replay.requestId}`, object: "chat.completion.chunk" });
    // Without include_usage the replay has no usage chunk, like a live stream.
    const noUsage = sseData((await call(key, "/v1/chat/completions", chat("stream me", { stream: true }))).text);
    expect(noUsage.length).toBe(liveEvents.length - 1);
    expect(noUsage.some((e) => e.includes('"usage":{'))).toBe(false);
    // The JSON form of the same request is a hit with the assembled text.
    const asJson = await call(key, "/v1/chat/completions", chat("stream me"));
    expect(asJson.cache).toBe("hit");
    const text = liveEvents
      .filter((e) => e !== "[DONE]")
      .map((e) => (JSON.parse(e) as { choices: { delta?: { content?: string } }[] }).choices[0]?.delta?.content ?? "")
      .join("");
    expect(json<ChatBody>(asJson).choices[0]?.message.content).toBe(text);
    // And the other way: a JSON answer replayed as a stream.
    expect((await call(key, "/v1/chat/completions", chat("json first"))).cache).toBe("miss");
    const streamed = await call(key, "/v1/chat/completions", chat("json first", { stream: true }));
    expect(streamed.cache).toBe("hit");
    const events = sseData(streamed.text);
    expect(events.at(-1)).toBe("[DONE]");
    expect(JSON.parse(events[0] ?? "{}")).toMatchObject({ object: "chat.completion.chunk", choices: [{ index: 0, delta: { role: "assistant", content: "" } }] });
  });
});

describe("embeddings cache", () => {
  it("sends only the inputs not cached to the GPU and merges the answer in the client's order", async () => {
    const { key } = await freshTenant();
    const alone = await call(key, "/v1/embeddings", { model: "sim-embed", input: "beta input here" }, { "cache-control": "no-store" });
    expect(alone.cache).toBe("bypass");
    const betaTokens = json<EmbeddingBody>(alone).usage.prompt_tokens;
    const first = await call(key, "/v1/embeddings", { model: "sim-embed", input: ["alpha", "gamma words"] });
    expect([first.cache, first.inputs]).toEqual(["miss", "0/2"]);
    const batch = await call(key, "/v1/embeddings", { model: "sim-embed", input: ["alpha", "beta input here", "gamma words"] });
    expect([batch.cache, batch.inputs]).toEqual(["miss", "2/3"]);
    const merged = json<EmbeddingBody>(batch);
    // Only beta reached the GPU: the usage is its tokens alone.
    expect(merged.usage.prompt_tokens).toBe(betaTokens);
    expect(merged.data.map((d) => d.index)).toEqual([0, 1, 2]);
    expect(merged.data[0]?.embedding).toEqual(json<EmbeddingBody>(first).data[0]?.embedding);
    expect(merged.data[1]?.embedding).toEqual(json<EmbeddingBody>(alone).data[0]?.embedding);
    expect(merged.data[2]?.embedding).toEqual(json<EmbeddingBody>(first).data[1]?.embedding);
    // Now all three are cached: no GPU at all.
    const all = await call(key, "/v1/embeddings", { model: "sim-embed", input: ["gamma words", "alpha", "beta input here"] });
    expect([all.cache, all.inputs, all.node]).toEqual(["hit", "3/3", null]);
    expect(json<EmbeddingBody>(all).data.map((d) => d.embedding)).toEqual([merged.data[2]?.embedding, merged.data[0]?.embedding, merged.data[1]?.embedding]);
    expect(json<EmbeddingBody>(all).usage.prompt_tokens).toBe(0);
    // The encoding does not key: a base64 request is answered from the float entries (the same float32 values).
    const asBase64 = await call(key, "/v1/embeddings", { model: "sim-embed", input: ["alpha", "beta input here"], encoding_format: "base64" });
    expect([asBase64.cache, asBase64.inputs]).toEqual(["hit", "2/2"]);
    const decoded = json<{ data: { embedding: string }[] }>(asBase64).data.map((d) => {
      const bytes = Uint8Array.from(atob(d.embedding), (ch) => ch.charCodeAt(0));
      return Array.from(new Float32Array(bytes.buffer));
    });
    expect(decoded).toEqual([merged.data[0]?.embedding, merged.data[1]?.embedding]);
    // Fields that change the vector key apart; token-id inputs are inputs too.
    expect((await call(key, "/v1/embeddings", { model: "sim-embed", input: "alpha", dimensions: 64 })).cache).toBe("miss");
    expect((await call(key, "/v1/embeddings", { model: "sim-embed", input: "alpha", dimensions: 64 })).cache).toBe("hit");
    expect((await call(key, "/v1/embeddings", { model: "sim-embed", input: [[1, 2, 3], [4, 5]] })).cache).toBe("miss");
    const tokenIds = await call(key, "/v1/embeddings", { model: "sim-embed", input: [[4, 5], [1, 2, 3]] });
    expect([tokenIds.cache, tokenIds.inputs]).toEqual(["hit", "2/2"]);
  });
});

describe("metering of hits", () => {
  it("records a hit with cache_hit, the cached tokens as cached prompt tokens, no node and the catalogue's hit price", async () => {
    const { key, tenantId } = await freshTenant();
    const miss = await call(key, "/v1/chat/completions", chat("meter me"));
    const hit = await call(key, "/v1/chat/completions", chat("meter me"));
    const usage = json<ChatBody>(miss).usage;
    // A non-zero factor: the hit costs half of what the GPU answer cost.
    await query((db) => db.update(models).set({ cacheHitPriceFactor: "0.5" }).where(eq(models.id, "sim-llama-8b")));
    await redis().del(routingCacheKey(env.REDIS_PREFIX));
    clearIsolateCaches();
    let paid: Answer;
    try {
      paid = await call(key, "/v1/chat/completions", chat("meter me"));
    } finally {
      await query((db) => db.update(models).set({ cacheHitPriceFactor: "0" }).where(eq(models.id, "sim-llama-8b")));
      await redis().del(routingCacheKey(env.REDIS_PREFIX));
      clearIsolateCaches();
    }
    expect([miss.cache, hit.cache, paid.cache]).toEqual(["miss", "hit", "hit"]);
    const rows = await rowsOf([miss.requestId, hit.requestId, paid.requestId]);
    const byId = (id: string) => rows.find((r) => r.id === id);
    const full = Math.round(usage.prompt_tokens * 0.1 + usage.completion_tokens * 0.2);
    expect(byId(miss.requestId)).toMatchObject({ cacheHit: false, promptTokens: usage.prompt_tokens, completionTokens: usage.completion_tokens, costMicros: full });
    expect(byId(miss.requestId)?.nodeId).not.toBeNull();
    expect(byId(hit.requestId)).toMatchObject({ cacheHit: true, nodeId: null, status: "ok", httpStatus: 200, promptTokens: usage.prompt_tokens, cachedPromptTokens: usage.prompt_tokens, completionTokens: usage.completion_tokens, costMicros: 0 });
    expect(byId(paid.requestId)).toMatchObject({ cacheHit: true, costMicros: Math.round(full * 0.5) });
    const hourly = await query((db) => db.select().from(usageHourly).where(eq(usageHourly.tenantId, tenantId)));
    expect(hourly.reduce((s, h) => s + h.cacheHits, 0)).toBe(2);
    expect(hourly.reduce((s, h) => s + h.requests, 0)).toBe(3);
  });

  it("meters a partly cached batch with the GPU's tokens only (reconciliation stays exact) and the cached inputs at the hit price", async () => {
    const { key } = await freshTenant();
    const first = await call(key, "/v1/embeddings", { model: "sim-embed", input: "one" });
    const batch = await call(key, "/v1/embeddings", { model: "sim-embed", input: ["one", "two two"] });
    const rows = await rowsOf([first.requestId, batch.requestId]);
    const oneTokens = json<EmbeddingBody>(first).usage.prompt_tokens;
    const gpuTokens = json<EmbeddingBody>(batch).usage.prompt_tokens;
    expect(gpuTokens).toBeGreaterThan(0);
    expect(rows.find((r) => r.id === first.requestId)).toMatchObject({ cacheHit: false, promptTokens: oneTokens });
    // The hit price is 0 by default: the cached input adds nothing.
    expect(rows.find((r) => r.id === batch.requestId)).toMatchObject({ cacheHit: false, promptTokens: gpuTokens, cachedPromptTokens: 0, costMicros: Math.round(gpuTokens * 0.02) });
  });
});

describe("size bound and outages", () => {
  it("keeps a tenant's entries under CACHE_TENANT_MAX_BYTES, evicting the oldest first", async () => {
    const { key, tenantId } = await freshTenant();
    const [index, sizes] = tenantIndexKeys(env.REDIS_PREFIX, tenantId);
    expect((await call(key, "/v1/chat/completions", chat("bound 1"))).cache).toBe("miss");
    const one = Number(await redis().hget(sizes, "*"));
    expect(one).toBeGreaterThan(100);
    // Room for about two and a half entries of this size.
    const bound = Math.floor(one * 2.5);
    const small: Bindings = { ...env, CACHE_TENANT_MAX_BYTES: String(bound) };
    for (const p of ["bound 2", "bound 3", "bound 4", "bound 5"]) expect((await call(key, "/v1/chat/completions", chat(p), {}, small)).cache).toBe("miss");
    const total = Number(await redis().hget(sizes, "*"));
    expect(total).toBeLessThanOrEqual(bound);
    expect(await redis().zcard(index)).toBe(2);
    // The newest two are still there, the oldest were evicted.
    expect((await call(key, "/v1/chat/completions", chat("bound 5"), {}, small)).cache).toBe("hit");
    expect((await call(key, "/v1/chat/completions", chat("bound 4"), {}, small)).cache).toBe("hit");
    expect((await call(key, "/v1/chat/completions", chat("bound 1"), {}, small)).cache).toBe("miss");
    expect(Number(await redis().hget(sizes, "*"))).toBeLessThanOrEqual(bound);
  });

  it("serves from the GPU as a miss when Redis cannot be read in time", async () => {
    const { key } = await freshTenant();
    // A warm identity and routing view first (the isolate keeps them while Redis is away).
    expect((await call(key, "/v1/chat/completions", chat("warm up"))).status).toBe(200);
    const hung: Bindings = { ...env, UPSTASH_REDIS_REST_URL: "http://127.0.0.1:9", REDIS_TIMEOUT_MS: "300" };
    const res = await call(key, "/v1/chat/completions", chat("warm up"), {}, hung);
    expect(res.status).toBe(200);
    expect(res.cache).toBe("miss");
    expect(res.node).not.toBeNull();
    const emb = await call(key, "/v1/embeddings", { model: "sim-embed", input: ["r1", "r2"] }, {}, hung);
    expect([emb.status, emb.cache]).toEqual([200, "miss"]);
  });
});

describe("environment admin", () => {
  it("turns an environment's cache off through the admin API, reaching its keys at once", async () => {
    const { key, environmentId } = await freshTenant();
    expect((await call(key, "/v1/chat/completions", chat("admin switch"))).cache).toBe("miss");
    const ctx = createExecutionContext();
    const res = await worker.fetch(
      new Request(`http://gateway.test/admin/environments/${environmentId}`, {
        method: "PATCH",
        headers: { authorization: `Bearer ${env.ADMIN_TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({ cache_enabled: false }),
      }),
      env,
      ctx,
    );
    await waitOnExecutionContext(ctx);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ id: environmentId, cache_enabled: false });
    const [row] = await query((db) => db.select().from(environments).where(eq(environments.id, environmentId)));
    expect(row?.cacheEnabled).toBe(false);
    clearIsolateCaches();
    expect((await call(key, "/v1/chat/completions", chat("admin switch"))).cache).toBe("bypass");
  });
});

describe("catalogue admin", () => {
  it("sets a model's cache_hit_price_factor through PUT /admin/models/:id (0 to 1) and shows it", async () => {
    const id = `cachef-${crypto.randomUUID().slice(0, 8)}`;
    const created = await admin<{ cache_hit_price_factor: number }>("PUT", `/models/${id}`, { family: "qwen", context_length: 4096 });
    expect(created.body.cache_hit_price_factor).toBe(0);
    const set = await admin<{ cache_hit_price_factor: number }>("PUT", `/models/${id}`, { cache_hit_price_factor: 0.25 });
    expect(set).toMatchObject({ status: 200, body: { cache_hit_price_factor: 0.25 } });
    const tooHigh = await admin<{ error: { param: string } }>("PUT", `/models/${id}`, { cache_hit_price_factor: 1.5 });
    expect(tooHigh).toMatchObject({ status: 400, body: { error: { param: "cache_hit_price_factor" } } });
    await admin("DELETE", `/models/${id}`);
  });
});

describe("cache admin", () => {
  it("shows a tenant's entries and bytes and purges them (a tenant admin key only its own tenant)", async () => {
    const { key, tenantId } = await freshTenant();
    expect((await call(key, "/v1/chat/completions", chat("purge me"))).cache).toBe("miss");
    expect((await call(key, "/v1/embeddings", { model: "sim-embed", input: ["p1", "p2"] })).cache).toBe("miss");
    const shown = await admin<{ entries: number; bytes: number; max_bytes: number }>("GET", `/cache/${tenantId}`);
    expect(shown).toMatchObject({ status: 200, body: { object: "tenant_cache", tenant_id: tenantId, entries: 3 } });
    expect(shown.body.bytes).toBeGreaterThan(0);
    expect(shown.body.max_bytes).toBe(Number(env.CACHE_TENANT_MAX_BYTES));
    // Another tenant's admin key cannot see or purge it.
    const other = await query(async (db) => {
      const t = await createTenant(db, "test", { name: `cache-other-${crypto.randomUUID().slice(0, 8)}` });
      const e = await createEnvironment(db, "test", { tenantId: t.id, name: "prod" });
      return (await createApiKey(db, "test", { tenantId: t.id, environmentId: e.id, name: "admin", scopes: ["admin"] })).key;
    });
    expect((await admin("DELETE", `/cache/${tenantId}`, undefined, other)).status).toBe(404);
    const purged = await admin<{ deleted: number }>("DELETE", `/cache/${tenantId}`);
    expect(purged).toMatchObject({ status: 200, body: { purged: true, deleted: 3 } });
    expect((await admin<{ entries: number; bytes: number }>("GET", `/cache/${tenantId}`)).body).toMatchObject({ entries: 0, bytes: 0 });
    expect((await call(key, "/v1/chat/completions", chat("purge me"))).cache).toBe("miss");
  });
});
