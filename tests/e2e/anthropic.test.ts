/**
 * End to end: Anthropic's Messages API through the local stack (wrangler dev + backplane + simulated
 * vLLM + Postgres + Redis) driven by the official `@anthropic-ai/sdk`: answers, streams, token
 * counts, metering to the token, broken streams, and the SDK's typed errors for what the gateway refuses.
 */
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDb, type NodeDb } from "../../dev/db.ts";
import type { Stack } from "../../dev/stack.ts";
import { startTestStack, type TestStack } from "../support/e2e-stack.ts";
import { adminJson, newTenantKey, usageRowOf } from "../support/e2e-calls.ts";

let started: TestStack;
let stack: Stack;
let db: NodeDb;
let anthropic: Anthropic;

const usageFor = (requestId: string | null | undefined) => usageRowOf(stack, db, requestId);
const admin = <T = unknown>(method: string, path: string, body?: unknown) => adminJson<T>(stack, method, path, body);
const freshKey = () => newTenantKey(stack, "anthropic");

beforeAll(async () => {
  started = await startTestStack("anthropic", { simArgs: ["--ttft-ms", "5", "--inter-token-ms", "5"] });
  stack = started.stack;
  db = openDb(started.databaseUrl);
  anthropic = new Anthropic({ baseURL: stack.gatewayUrl, apiKey: stack.apiKey, maxRetries: 0 });
}, 120_000);

afterAll(async () => {
  await db?.close();
  await started?.close();
});

const MODEL = "sim-llama-8b";
const question = [{ role: "user" as const, content: "What is a switchyard?" }];

describe("Anthropic Messages through the gateway", () => {
  it("answers messages.create, meters the engine's usage, and counts the prompt as /v1/chat/completions does", async () => {
    const message = await anthropic.messages.create({ model: MODEL, max_tokens: 12, messages: question, system: "Be brief." });
    expect(message).toMatchObject({ type: "message", role: "assistant", stop_reason: "max_tokens", usage: { output_tokens: 12 } });
    expect(message.content[0]?.type).toBe("text");
    const row = await usageFor(message._request_id);
    expect(row).toMatchObject({ endpoint: "messages", status: "ok", streamed: false, promptTokens: message.usage.input_tokens, completionTokens: 12 });
    expect(row.costMicros).toBeGreaterThan(0);
    // vLLM folds `system` into the chat prompt: the same conversation as chat has the same prompt tokens.
    const openai = new OpenAI({ baseURL: `${stack.gatewayUrl}/v1`, apiKey: stack.apiKey, maxRetries: 0 });
    const chat = await openai.chat.completions.create({ model: MODEL, max_tokens: 1, messages: [{ role: "system", content: "Be brief." }, ...question] });
    expect(chat.usage?.prompt_tokens).toBe(message.usage.input_tokens);
  });

  it("streams with messages.stream, text arriving as deltas, and meters what message_start and message_delta said", async () => {
    const stream = anthropic.messages.stream({ model: MODEL, max_tokens: 8, messages: question });
    const deltas: string[] = [];
    stream.on("text", (text) => deltas.push(text));
    const final = await stream.finalMessage();
    expect(deltas.length).toBeGreaterThan(1);
    expect(final.usage.output_tokens).toBe(8);
    const row = await usageFor(stream.request_id);
    expect(row).toMatchObject({ endpoint: "messages", streamed: true, status: "ok", promptTokens: final.usage.input_tokens, completionTokens: 8 });
    expect(row.ttftMs).not.toBeNull();
  });

  it("counts tokens without billing them", async () => {
    const { data, response } = await anthropic.messages.countTokens({ model: MODEL, messages: question }).withResponse();
    const message = await anthropic.messages.create({ model: MODEL, max_tokens: 1, messages: question });
    expect(data.input_tokens).toBe(message.usage.input_tokens);
    const row = await usageFor(response.headers.get("request-id"));
    expect(row).toMatchObject({ endpoint: "count_tokens", status: "ok", promptTokens: 0, completionTokens: 0, costMicros: 0 });
  });

  it("ends a stream whose engine dies with an Anthropic error event, and meters the tokens delivered", async () => {
    const body = { model: MODEL, max_tokens: 30, messages: question, stream: true, sim_fault: "drop_mid_stream", sim_fault_after: 4 };
    const res = await fetch(`${stack.gatewayUrl}/v1/messages`, { method: "POST", headers: { "x-api-key": stack.apiKey, "content-type": "application/json", "anthropic-version": "2023-06-01" }, body: JSON.stringify(body) });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain("event: message_start");
    expect(text.trimEnd().split("\n\n").at(-1)).toMatch(/^event: error\ndata: \{"type":"error","error":\{"type":"api_error"/);
    expect(text).not.toContain("[DONE]");
    expect(text).not.toContain("message_stop");
    const row = await usageFor(res.headers.get("request-id"));
    expect(row).toMatchObject({ endpoint: "messages", status: "error", completionTokens: 4 });
    expect(row.promptTokens).toBeGreaterThan(0);

    // The SDK turns the in-band error into an APIError instead of a truncated message.
    const stream = anthropic.messages.stream({ model: MODEL, max_tokens: 30, messages: question, sim_fault: "drop_mid_stream", sim_fault_after: 2 } as Anthropic.MessageCreateParams);
    await expect(stream.finalMessage()).rejects.toBeInstanceOf(Anthropic.APIError);
  });

  it("gives the SDK's typed errors: NotFoundError, AuthenticationError, RateLimitError with retry-after, and a 402 billing error for a spent budget", async () => {
    await expect(anthropic.messages.create({ model: "no-such-model", max_tokens: 4, messages: question })).rejects.toBeInstanceOf(Anthropic.NotFoundError);
    const stranger = new Anthropic({ baseURL: stack.gatewayUrl, apiKey: `sk-sy-${"Z".repeat(43)}`, maxRetries: 0 });
    await expect(stranger.messages.create({ model: MODEL, max_tokens: 4, messages: question })).rejects.toBeInstanceOf(Anthropic.AuthenticationError);

    const limited = await freshKey();
    await admin("PUT", `/limits/key/${limited.keyId}`, { rpm: 1, tpm: null, concurrency: null });
    const client = new Anthropic({ baseURL: stack.gatewayUrl, apiKey: limited.key, maxRetries: 0 });
    await client.messages.create({ model: MODEL, max_tokens: 2, messages: question });
    const refused = await client.messages.create({ model: MODEL, max_tokens: 2, messages: question }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(Anthropic.RateLimitError);
    const rateLimited = refused as InstanceType<typeof Anthropic.RateLimitError>;
    expect(rateLimited.status).toBe(429);
    expect(Number(rateLimited.headers?.get("retry-after"))).toBeGreaterThan(0);
    expect(rateLimited.error).toMatchObject({ type: "error", error: { type: "rate_limit_error", details: { error_code: "rate_limit_exceeded" } } });

    const broke = await freshKey();
    await admin("POST", "/budgets", { scope: "key", scope_id: broke.keyId, kind: "tokens", period: "day", amount: 50 });
    const poor = new Anthropic({ baseURL: stack.gatewayUrl, apiKey: broke.key, maxRetries: 0 });
    const billing = await poor.messages.create({ model: MODEL, max_tokens: 500, messages: question }).catch((e: unknown) => e);
    expect(billing).toBeInstanceOf(Anthropic.APIError);
    expect((billing as InstanceType<typeof Anthropic.APIError>).status).toBe(402);
    expect((billing as InstanceType<typeof Anthropic.APIError>).error).toMatchObject({ error: { type: "billing_error", details: { error_code: "insufficient_quota" } } });
  });
});
