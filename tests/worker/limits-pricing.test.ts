import { env } from "cloudflare:test";
import { exports } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import OpenAI, { APIError } from "openai";
import { describe, expect, it } from "vitest";
import { budgets, limitOverrides, usageRecords } from "../../schema/tables/index.ts";
import { createEnvironment, createTenant, newId } from "../../worker/src/admin/store.ts";
import { budgetCounter, type BudgetEntry } from "../../worker/src/limits/budgets.ts";
import { createApiKey, eventually, flushNow, query, redis } from "./helpers.ts";

// Every field that changes how much vLLM may generate is priced at admission from what the engine
// will do, end to end through the gateway against the simulated engine (sim-llama-8b: context 8,192).

const MODEL = "sim-llama-8b";
const CONTEXT = 8192;

/** A fresh key with a token budget per day and limit overrides. */
async function keyWith(opts: { tokenBudget?: number; tpm?: number }) {
  return query(async (db) => {
    const tenant = await createTenant(db, "test", { name: `pricing-${crypto.randomUUID().slice(0, 8)}` });
    const environment = await createEnvironment(db, "test", { tenantId: tenant.id, name: "prod" });
    const key = await createApiKey(db, "test", { tenantId: tenant.id, environmentId: environment.id, name: "k" });
    if (opts.tokenBudget !== undefined) {
      await db.insert(budgets).values({ id: newId("bud"), scope: "key", scopeId: key.id, kind: "tokens", period: "day", amount: opts.tokenBudget });
    }
    await db.insert(limitOverrides).values({ scope: "key", scopeId: key.id, rpm: 1000, tpm: opts.tpm ?? null, concurrency: 100 });
    const [budget] = (await db.select().from(budgets).where(eq(budgets.scopeId, key.id))) as BudgetEntry[];
    return { key: key.key, keyId: key.id, budget };
  });
}

/** The official openai client, calling the worker's fetch handler. */
function client(apiKey: string): OpenAI {
  return new OpenAI({
    apiKey,
    baseURL: "http://gateway.test/v1",
    maxRetries: 0,
    fetch: (input: string | URL | Request, init?: RequestInit) => exports.default.fetch(new Request(input, init)),
  });
}

/** The error the client threw, for asserting status, headers and body. */
async function refusal(call: Promise<unknown>): Promise<APIError> {
  const err = await call.then(
    () => null,
    (e: unknown) => e,
  );
  if (!(err instanceof APIError)) throw new Error(`expected an API error, got ${String(err)}`);
  return err;
}

async function counter(budget: BudgetEntry | undefined): Promise<number> {
  if (!budget) throw new Error("budget missing");
  return Number((await redis().get<number>(budgetCounter(env.REDIS_PREFIX, budget, new Date()).key)) ?? 0);
}

// vLLM-only sampling fields the openai types do not declare; the client sends extra keys as they are.
type VllmExtras = { min_tokens?: number; ignore_eos?: boolean; best_of?: number; n_predict?: number; n_cmpl?: number };

describe("pricing what the engine will generate against budgets", () => {
  it("refuses /v1/completions with max_tokens null against a 1,000-token budget, because vLLM then generates up to the context", async () => {
    const { key, budget } = await keyWith({ tokenBudget: 1_000 });
    const body: OpenAI.CompletionCreateParamsNonStreaming & VllmExtras = { model: MODEL, prompt: "Once upon a time", max_tokens: null, min_tokens: 600 };
    const err = await refusal(client(key).completions.create(body));
    expect(err.status).toBe(429);
    expect(err.error).toMatchObject({ type: "insufficient_quota", code: "insufficient_quota", param: null });
    expect(err.message).toContain("1000 tokens per day");
    expect(await counter(budget)).toBe(0);
  });

  it("serves max_tokens null when the budget holds the whole context, and charges every token the engine produced", async () => {
    const { key, budget } = await keyWith({ tokenBudget: 3 * CONTEXT });
    const body: OpenAI.CompletionCreateParamsNonStreaming & VllmExtras = { model: MODEL, prompt: "Once upon a time", max_tokens: null, min_tokens: 600 };
    const { data, response } = await client(key).completions.create(body).withResponse();
    expect(response.status).toBe(200);
    expect(data.usage?.completion_tokens).toBeGreaterThanOrEqual(600);
    const total = data.usage?.total_tokens ?? 0;
    await eventually(async () => ((await counter(budget)) === total ? true : undefined));
  });

  it("reserves one set of choices per prompt: a 100-prompt batch is refused against 1,000 tokens, a small batch is charged in full", async () => {
    const { key, budget } = await keyWith({ tokenBudget: 1_000 });
    const openai = client(key);
    const big = await refusal(openai.completions.create({ model: MODEL, prompt: Array.from({ length: 100 }, () => "hi") }));
    expect(big.status).toBe(429);
    expect(big.error).toMatchObject({ type: "insufficient_quota", code: "insufficient_quota" });
    expect(await counter(budget)).toBe(0);

    const { data, response } = await openai.completions.create({ model: MODEL, prompt: ["a", "b", "c"], n: 2, max_tokens: 5 }).withResponse();
    expect(response.status).toBe(200);
    expect(data.choices).toHaveLength(6);
    expect(data.usage?.completion_tokens).toBe(30);
    const total = data.usage?.total_tokens ?? 0;
    await eventually(async () => ((await counter(budget)) === total ? true : undefined));
  });

  it("reserves n and best_of sequences: 300 tokens × 4 is refused against 1,000 tokens while one sequence is served", async () => {
    const { key, budget } = await keyWith({ tokenBudget: 1_000 });
    const openai = client(key);
    const withN = await refusal(openai.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 300, n: 4 }));
    expect(withN.status).toBe(429);
    expect(withN.error).toMatchObject({ code: "insufficient_quota" });
    const bestOf: OpenAI.CompletionCreateParamsNonStreaming & VllmExtras = { model: MODEL, prompt: "hi", max_tokens: 300, best_of: 4 };
    const withBestOf = await refusal(openai.completions.create(bestOf));
    expect(withBestOf.status).toBe(429);
    expect(withBestOf.error).toMatchObject({ code: "insufficient_quota" });
    expect(await counter(budget)).toBe(0);

    const { response } = await openai.completions.create({ model: MODEL, prompt: "hi", max_tokens: 300 }).withResponse();
    expect(response.status).toBe(200);
  });
});

describe("pricing prompts the body's size does not bound", () => {
  it("reserves the whole context for an image by URL (its tokens are not bounded by its bytes), where a text prompt of the same size is served", async () => {
    const { key, budget } = await keyWith({ tokenBudget: 2_000 });
    const openai = client(key);
    const image: OpenAI.ChatCompletionContentPart[] = [{ type: "text", text: "What is this?" }, { type: "image_url", image_url: { url: "https://example.com/huge.png" } }];
    const refused = await refusal(openai.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: image }], max_tokens: 4 }));
    expect(refused.status).toBe(429);
    expect(refused.error).toMatchObject({ code: "insufficient_quota" });
    expect(await counter(budget)).toBe(0);
    const { response } = await openai.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "What is this? https://example.com/huge.png" }], max_tokens: 4 }).withResponse();
    expect(response.status).toBe(200);
  });
});

describe("pricing llama.cpp's own limit fields", () => {
  it("prices n_predict (which llama-server reads over max_tokens; -1 is no limit) and n_cmpl (its n)", async () => {
    const { key, budget } = await keyWith({ tokenBudget: 1_000 });
    const openai = client(key);
    const chat = (extra: VllmExtras): OpenAI.ChatCompletionCreateParamsNonStreaming & VllmExtras => ({ model: MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 4, ...extra });
    for (const extra of [{ n_predict: 2_000 }, { n_predict: -1 }, { n_predict: 300, n_cmpl: 4 }] satisfies VllmExtras[]) {
      const err = await refusal(openai.chat.completions.create(chat(extra)));
      expect(err.status).toBe(429);
      expect(err.error).toMatchObject({ code: "insufficient_quota" });
    }
    const invalid = await refusal(openai.chat.completions.create(chat({ n_predict: -2 })));
    expect(invalid.status).toBe(400);
    expect(invalid.error).toMatchObject({ code: "invalid_value", param: "n_predict" });
    expect(await counter(budget)).toBe(0);
    // A smaller n_predict than max_tokens cannot lower the price (vLLM ignores it and runs to max_tokens).
    const { response } = await openai.chat.completions.create(chat({ n_predict: 2 })).withResponse();
    expect(response.status).toBe(200);
  });
});

describe("tokens per minute", () => {
  it("charges usage beyond the admission estimate after the response, so the next request gets 429 with type tokens", async () => {
    const { key, keyId } = await keyWith({ tpm: 3_000 });
    const openai = client(key);
    // 2,400 token ids are 2,400 prompt tokens but only ~4,800 bytes: the estimate (bytes / 4 + 16) is
    // about 1,216 tokens, the real usage 2,416. Without charging the overrun 1,784 would be left.
    const prompt = Array.from({ length: 2_400 }, () => 1);
    const first = await openai.completions.create({ model: MODEL, prompt }).withResponse();
    expect(first.response.status).toBe(200);
    expect(first.data.usage?.total_tokens).toBe(2_416);
    expect(first.response.headers.get("x-ratelimit-limit-tokens")).toBe("3000");
    // The overrun is charged when the request's end is settled, which also records its usage.
    await eventually(async () => {
      await flushNow();
      const rows = await query((db) => db.select({ id: usageRecords.id }).from(usageRecords).where(eq(usageRecords.apiKeyId, keyId)));
      return rows.length === 1 ? true : undefined;
    });

    const err = await refusal(openai.completions.create({ model: MODEL, prompt }));
    expect(err.status).toBe(429);
    expect(err.error).toMatchObject({ type: "tokens", code: "rate_limit_exceeded", param: null });
    expect(err.message).toContain("tokens per minute: limit 3000");
    expect(Number(err.headers?.get("retry-after"))).toBeGreaterThan(0);
    expect(err.headers?.get("x-ratelimit-remaining-tokens")).toBe("0");
  });

  it("counts min_tokens and ignore_eos in the estimate: a request that can never fit a minute's tokens is a 400, not a 429", async () => {
    const { key } = await keyWith({ tpm: 5_000 });
    const openai = client(key);
    // Without a limit the estimate is 4,096 per choice; min_tokens 5,000 and ignore_eos (to the end
    // of the context) raise it past the key's 5,000 tokens per minute.
    for (const extra of [{ min_tokens: 5_000 }, { ignore_eos: true }] satisfies VllmExtras[]) {
      const body: OpenAI.ChatCompletionCreateParamsNonStreaming & VllmExtras = { model: MODEL, messages: [{ role: "user", content: "hi" }], ...extra };
      const err = await refusal(openai.chat.completions.create(body));
      expect(err.status).toBe(400);
      expect(err.error).toMatchObject({ type: "invalid_request_error", code: "invalid_value", param: "max_tokens" });
      expect(err.message).toContain("limit of 5000 tokens per minute");
      expect(err.headers?.get("retry-after")).toBeNull();
    }
    const tooLong = await refusal(openai.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "hi" }], max_completion_tokens: 6_000 }));
    expect(tooLong.status).toBe(400);
    expect(tooLong.error).toMatchObject({ code: "invalid_value", param: "max_completion_tokens" });
    expect(tooLong.message).toContain("can never be admitted");
    const embedding = await refusal(openai.embeddings.create({ model: "sim-embed", input: "word ".repeat(5_000) }));
    expect(embedding.status).toBe(400);
    expect(embedding.error).toMatchObject({ code: "invalid_value", param: "input" });

    const { response } = await openai.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 4 }).withResponse();
    expect(response.status).toBe(200);
  });
});

describe("context length", () => {
  it("answers 400 context_length_exceeded naming the field when max_tokens is above the model's context", async () => {
    const { key, budget } = await keyWith({ tokenBudget: 1_000_000 });
    const openai = client(key);
    const err = await refusal(openai.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 9_000 }));
    expect(err.status).toBe(400);
    expect(err.error).toMatchObject({ type: "invalid_request_error", code: "context_length_exceeded", param: "max_tokens" });
    expect(err.message).toContain("maximum context length is 8192 tokens");
    const viaCompletionTokens = await refusal(
      openai.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "hi" }], max_completion_tokens: 9_000 }),
    );
    expect(viaCompletionTokens.error).toMatchObject({ code: "context_length_exceeded", param: "max_completion_tokens" });
    const completions = await refusal(openai.completions.create({ model: MODEL, prompt: "hi", max_tokens: 10_000 }));
    expect(completions.status).toBe(400);
    expect(completions.error).toMatchObject({ code: "context_length_exceeded", param: "max_tokens" });
    expect(await counter(budget)).toBe(0);
  });
});
