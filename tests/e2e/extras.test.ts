/**
 * End to end: vLLM's extra routes (/rerank, /score, /tokenize, /detokenize) through the local stack
 * (wrangler dev + backplane + simulated vLLM + Postgres + Redis): answers equal the engine's own,
 * rerank and score are metered from the engine's usage, tokenizing is recorded at no cost, and the
 * gateway refuses a missing key and a chat model.
 */
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDb, type NodeDb } from "../../dev/db.ts";
import type { Stack } from "../../dev/stack.ts";
import { startTestStack, type TestStack } from "../support/e2e-stack.ts";
import { usageRowOf } from "../support/e2e-calls.ts";

let started: TestStack;
let stack: Stack;
let db: NodeDb;

const usageFor = (requestId: string | null | undefined) => usageRowOf(stack, db, requestId);

beforeAll(async () => {
  started = await startTestStack("extras", { simArgs: ["--ttft-ms", "5", "--inter-token-ms", "2"] });
  stack = started.stack;
  db = openDb(started.databaseUrl);
}, 120_000);

afterAll(async () => {
  await db?.close();
  await started?.close();
});

const EMBED = "sim-embed";
const CHAT = "sim-llama-8b";
const QUERY = "capital of France";
/** sim-embed's seeded input price: $0.02 per million tokens, so micro-dollars are tokens × 0.02, rounded. */
const EMBED_PRICE = 0.02;
const DOCUMENTS = ["Berlin is the capital of Germany.", "Paris is the capital of France.", "Cats sleep all day."];

/** POSTs JSON to the gateway with the stack's key (or the headers given). */
function gateway(path: string, body: unknown, headers: Record<string, string> = { authorization: `Bearer ${stack.apiKey}` }): Promise<Response> {
  return fetch(`${stack.gatewayUrl}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
}

/** The engine's own answer, asked directly at its root path. */
async function engine<T>(path: string, body: unknown): Promise<T> {
  const res = await fetch(`${stack.simUrl}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  expect(res.status).toBe(200);
  return (await res.json()) as T;
}

interface RerankBody {
  id: string;
  usage: { total_tokens: number };
  results: { index: number; relevance_score: number }[];
}
interface ScoreBody {
  id: string;
  created: number;
  usage: { prompt_tokens: number; total_tokens: number };
}
interface TokenizeBody {
  count: number;
  tokens: number[];
}

describe("vLLM's extra routes through the gateway", () => {
  it("reranks on /rerank, /v1/rerank and /v2/rerank as the engine does, metering its total_tokens as prompt tokens", async () => {
    const body = { model: EMBED, query: QUERY, documents: DOCUMENTS, top_n: 2 };
    const direct = await engine<RerankBody>("/rerank", body);
    for (const path of ["/rerank", "/v1/rerank", "/v2/rerank"]) {
      const res = await gateway(path, body);
      expect(res.status, path).toBe(200);
      const answer = (await res.json()) as RerankBody;
      expect(answer.id).toMatch(/^rerank-/);
      expect({ ...answer, id: "" }).toEqual({ ...direct, id: "" });
      expect(answer.results.map((r) => r.index)).toEqual([1, 0]);
      const row = await usageFor(res.headers.get("x-request-id"));
      expect(row).toMatchObject({
        endpoint: "rerank",
        model: EMBED,
        status: "ok",
        httpStatus: 200,
        streamed: false,
        promptTokens: direct.usage.total_tokens,
        completionTokens: 0,
        costMicros: Math.round(direct.usage.total_tokens * EMBED_PRICE),
      });
    }
  });

  it("scores on /score and /v1/score as the engine does, metering its prompt_tokens", async () => {
    for (const [path, body] of [
      ["/score", { model: EMBED, text_1: QUERY, text_2: DOCUMENTS }],
      ["/v1/score", { model: EMBED, text_1: ["capital of France", "sleepy cats"], text_2: ["Paris is the capital of France.", "Cats sleep all day."] }],
    ] as const) {
      const direct = await engine<ScoreBody>("/score", body);
      const res = await gateway(path, body);
      expect(res.status, path).toBe(200);
      const answer = (await res.json()) as ScoreBody;
      expect(answer.id).toMatch(/^score-/);
      expect({ ...answer, id: "", created: 0 }).toEqual({ ...direct, id: "", created: 0 });
      const row = await usageFor(res.headers.get("x-request-id"));
      expect(row).toMatchObject({
        endpoint: "score",
        model: EMBED,
        status: "ok",
        promptTokens: direct.usage.prompt_tokens,
        completionTokens: 0,
        costMicros: Math.round(direct.usage.prompt_tokens * EMBED_PRICE),
      });
    }
  });

  it("tokenizes and detokenizes on any model as the engine does, recorded with no tokens and no cost", async () => {
    const text = "Switchyards route trains; gateways route tokens.";
    const body = { model: CHAT, prompt: text };
    const direct = await engine<TokenizeBody>("/tokenize", body);
    const res = await gateway("/tokenize", body);
    expect(res.status).toBe(200);
    const tokenized = (await res.json()) as TokenizeBody;
    expect(tokenized).toEqual(direct);
    expect(await usageFor(res.headers.get("x-request-id"))).toMatchObject({ endpoint: "tokenize", status: "ok", promptTokens: 0, completionTokens: 0, costMicros: 0 });

    // Without the BOS the ids read back to the text.
    const detokenized = await gateway("/detokenize", { model: CHAT, tokens: tokenized.tokens.slice(1) });
    expect(detokenized.status).toBe(200);
    expect(await detokenized.json()).toEqual({ prompt: text });
    expect(await usageFor(detokenized.headers.get("x-request-id"))).toMatchObject({ endpoint: "detokenize", status: "ok", promptTokens: 0, completionTokens: 0, costMicros: 0 });

    // An embedding model tokenizes too, and a chat's count is the chat's prompt_tokens.
    const onEmbed = await gateway("/tokenize", { model: EMBED, prompt: text });
    expect(await onEmbed.json()).toEqual({ ...direct, max_model_len: 512 });
    const messages = [{ role: "user" as const, content: "What is a switchyard?" }];
    const counted = (await (await gateway("/tokenize", { model: CHAT, messages })).json()) as TokenizeBody;
    const client = new OpenAI({ baseURL: `${stack.gatewayUrl}/v1`, apiKey: stack.apiKey, maxRetries: 0 });
    const chat = await client.chat.completions.create({ model: CHAT, messages, max_tokens: 1 });
    expect(counted.count).toBe(chat.usage?.prompt_tokens);
  });

  it("answers 401 without an API key on every extra route", async () => {
    const bodies: Record<string, unknown> = {
      "/rerank": { model: EMBED, query: QUERY, documents: DOCUMENTS },
      "/v1/rerank": { model: EMBED, query: QUERY, documents: DOCUMENTS },
      "/v2/rerank": { model: EMBED, query: QUERY, documents: DOCUMENTS },
      "/score": { model: EMBED, text_1: "a", text_2: "b" },
      "/v1/score": { model: EMBED, text_1: "a", text_2: "b" },
      "/tokenize": { model: CHAT, prompt: "a" },
      "/detokenize": { model: CHAT, tokens: [33] },
    };
    for (const [path, body] of Object.entries(bodies)) {
      const res = await gateway(path, body, {});
      expect(res.status, path).toBe(401);
      expect(((await res.json()) as { error: { type: string } }).error.type, path).toBe("invalid_request_error");
    }
  });

  it("refuses rerank on a chat model with a 400 naming model, before any engine sees it", async () => {
    const res = await gateway("/rerank", { model: CHAT, query: QUERY, documents: DOCUMENTS });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { message: string; type: string; param: string | null; code: string } };
    expect(body.error).toMatchObject({ type: "invalid_request_error", param: "model", code: "invalid_value" });
    expect(body.error.message).toContain(CHAT);
  });
});
