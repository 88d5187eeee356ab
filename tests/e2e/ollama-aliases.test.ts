/**
 * End to end on the local stack (wrangler dev + backplane + simulated engine + Postgres + Redis, as
 * `npm start` runs it): an Ollama-shaped client (plain fetch with Ollama's request and answer shapes,
 * as the `ollama` package sends them) on /api/embed and /api/embeddings, and the official `openai`
 * client calling chat and embeddings through model aliases, metered under the model's id.
 */
import OpenAI, { toFile } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDb, type NodeDb } from "../../dev/db.ts";
import type { Stack } from "../../dev/stack.ts";
import { startTestStack, type TestStack } from "../support/e2e-stack.ts";
import { adminJson, usageRowOf } from "../support/e2e-calls.ts";
import { wavFile } from "../support/audio-fixtures.ts";

let started: TestStack;
let stack: Stack;
let client: OpenAI;
let db: NodeDb;

/** The demo embedding model's Ollama-style alias (dev/seed.ts). */
const EMBED_TAG = "sim-embed:latest";
/** A chat alias this file gives the demo chat model. */
const CHAT_ALIAS = "llama-demo:latest";
/** OpenAI's transcription model name, as an alias of the demo speech model. */
const WHISPER_ALIAS = "whisper-1";

/** What the `ollama` package's embed() and embeddings() send and read, over plain fetch. */
async function ollama<T>(path: "/api/embed" | "/api/embeddings", body: unknown, key = stack.apiKey): Promise<{ status: number; headers: Headers; body: T }> {
  const res = await fetch(`${stack.gatewayUrl}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as T };
}

interface EmbedAnswer {
  model: string;
  embeddings: number[][];
  total_duration: number;
  load_duration: number;
  prompt_eval_count: number;
}

beforeAll(async () => {
  started = await startTestStack("ollama");
  stack = started.stack;
  client = new OpenAI({ baseURL: `${stack.gatewayUrl}/v1`, apiKey: stack.apiKey, maxRetries: 0 });
  db = openDb(started.databaseUrl);
  await adminJson(stack, "PUT", "/models/sim-llama-8b", { aliases: [CHAT_ALIAS] });
  await adminJson(stack, "PUT", "/models/sim-whisper", { aliases: [WHISPER_ALIAS] });
  // The change reaches the gateway within its routing cache time.
  const deadline = Date.now() + 15_000;
  const listed = async () => new Set((await client.models.list()).data.map((m) => m.id));
  for (let ids = await listed(); !ids.has(CHAT_ALIAS) || !ids.has(WHISPER_ALIAS); ids = await listed()) {
    if (Date.now() > deadline) throw new Error(`${CHAT_ALIAS} and ${WHISPER_ALIAS} never showed in /v1/models`);
    await new Promise((r) => setTimeout(r, 200));
  }
}, 120_000);

afterAll(async () => {
  await db?.close();
  await started?.close();
});

describe("an Ollama client on the local stack", () => {
  it("embeds one input with /api/embed by the model's Ollama tag, metered under the model's id", async () => {
    const res = await ollama<EmbedAnswer>("/api/embed", { model: EMBED_TAG, input: "Why is the sky blue?" });
    expect(res.status).toBe(200);
    expect(res.body.model).toBe(EMBED_TAG);
    expect(res.body.embeddings).toHaveLength(1);
    expect(res.body.embeddings[0]?.length).toBeGreaterThan(0);
    expect(res.body.prompt_eval_count).toBeGreaterThan(0);
    expect(res.body.total_duration).toBeGreaterThan(0);
    expect(res.headers.get("x-switchyard-node")).toBe(stack.nodeId);
    const row = await usageRowOf(stack, db, res.headers.get("x-request-id"));
    expect(row).toMatchObject({ tenantId: "ten_demo", model: "sim-embed", endpoint: "embeddings", status: "ok", promptTokens: res.body.prompt_eval_count });
  });

  it("embeds a batch with /api/embed, one vector per input in order", async () => {
    const inputs = ["the first input", "the second", "and a third one"];
    const batch = await ollama<EmbedAnswer>("/api/embed", { model: EMBED_TAG, input: inputs, truncate: true });
    expect(batch.status).toBe(200);
    expect(batch.body.embeddings).toHaveLength(3);
    for (const [i, input] of inputs.entries()) {
      const one = await ollama<EmbedAnswer>("/api/embed", { model: "sim-embed", input });
      expect(batch.body.embeddings[i]).toEqual(one.body.embeddings[0]);
    }
  });

  it("answers /api/embeddings with {embedding}", async () => {
    const res = await ollama<{ embedding: number[] }>("/api/embeddings", { model: EMBED_TAG, prompt: "The sky is blue because of Rayleigh scattering" });
    expect(res.status).toBe(200);
    expect(Object.keys(res.body)).toEqual(["embedding"]);
    expect(res.body.embedding.length).toBeGreaterThan(0);
    const row = await usageRowOf(stack, db, res.headers.get("x-request-id"));
    expect(row.model).toBe("sim-embed");
  });

  it("gets Ollama's error shape for a bad key and an unknown model", async () => {
    const bad = await ollama<{ error: string }>("/api/embed", { model: EMBED_TAG, input: "a" }, `sk-sy-${"x".repeat(43)}`);
    expect(bad.status).toBe(401);
    expect(typeof bad.body.error).toBe("string");
    const unknown = await ollama<{ error: string }>("/api/embeddings", { model: "nomic-embed-text:latest", prompt: "a" });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toContain("'nomic-embed-text:latest' does not exist");
  });
});

describe("the openai client through aliases", () => {
  it("lists the aliases as models of their own, rooted at the model", async () => {
    const data = (await client.models.list()).data as unknown as { id: string; root: string; alias_of: string | null }[];
    expect(data.find((m) => m.id === CHAT_ALIAS)).toMatchObject({ root: "sim-llama-8b", alias_of: "sim-llama-8b" });
    expect(data.find((m) => m.id === EMBED_TAG)).toMatchObject({ root: "sim-embed", alias_of: "sim-embed" });
  });

  it("chats through an alias: answered and metered under the model's id", async () => {
    const { data, response } = await client.chat.completions.create({ model: CHAT_ALIAS, messages: [{ role: "user", content: "What is a switchyard?" }], max_tokens: 6 }).withResponse();
    expect(data.model).toBe("sim-llama-8b");
    expect(data.usage?.completion_tokens).toBe(6);
    const row = await usageRowOf(stack, db, response.headers.get("x-request-id"));
    expect(row).toMatchObject({ tenantId: "ten_demo", model: "sim-llama-8b", endpoint: "chat", status: "ok", completionTokens: 6 });
  });

  it("streams a chat through an alias", async () => {
    const stream = await client.chat.completions.create({ model: CHAT_ALIAS, messages: [{ role: "user", content: "hi" }], max_tokens: 4, stream: true, stream_options: { include_usage: true } });
    let usage = 0;
    const models = new Set<string>();
    for await (const chunk of stream) {
      models.add(chunk.model);
      usage = chunk.usage?.completion_tokens ?? usage;
    }
    expect([...models]).toEqual(["sim-llama-8b"]);
    expect(usage).toBe(4);
  });

  it("transcribes an upload through an alias: the engine gets the model's id, the audio is billed under it", async () => {
    const audio = wavFile({ seconds: 2 });
    const { data, response } = await client.audio.transcriptions.create({ file: await toFile(audio, "speech.wav"), model: WHISPER_ALIAS }).withResponse();
    expect(data.text.length).toBeGreaterThan(0);
    const row = await usageRowOf(stack, db, response.headers.get("x-request-id"));
    expect(row).toMatchObject({ model: "sim-whisper", endpoint: "transcriptions", status: "ok", audioMs: 2000 });
  });

  it("embeds through an alias, metered under the model's id", async () => {
    const { data, response } = await client.embeddings.create({ model: EMBED_TAG, input: ["alpha", "beta"] }).withResponse();
    expect(data.data).toHaveLength(2);
    expect(data.model).toBe("sim-embed");
    const row = await usageRowOf(stack, db, response.headers.get("x-request-id"));
    expect(row).toMatchObject({ model: "sim-embed", endpoint: "embeddings", promptTokens: data.usage.prompt_tokens });
  });
});
