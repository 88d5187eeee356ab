/**
 * End to end: speech to text through the local stack (wrangler dev + backplane + simulated vLLM
 * serving `sim-whisper` + Postgres + Redis), with the official `openai` client: transcriptions and
 * translations answered as the engine answers them, streamed and not; usage rows carry the audio's
 * duration and its cost at the catalogue's price per minute, plus the tokens the engine reported;
 * spend budgets count audio exactly; a stream cancelled midway is metered and frees the engine.
 */
import OpenAI, { toFile } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDb, type NodeDb } from "../../dev/db.ts";
import type { Stack } from "../../dev/stack.ts";
import { startTestStack, type TestStack } from "../support/e2e-stack.ts";
import { adminJson, newTenantKey, usageRowOf } from "../support/e2e-calls.ts";
import { wavFile } from "../support/audio-fixtures.ts";

let started: TestStack;
let stack: Stack;
let db: NodeDb;
let client: OpenAI;

const MODEL = "sim-whisper";
/** The seeded price (dev/seed.ts): $0.006 per minute of audio, so a second costs 100 micro-USD. */
const MICROS_PER_SECOND = 100;

beforeAll(async () => {
  started = await startTestStack("audio", { simArgs: ["--ttft-ms", "5", "--inter-token-ms", "3"] });
  stack = started.stack;
  db = openDb(started.databaseUrl);
  client = new OpenAI({ baseURL: `${stack.gatewayUrl}/v1`, apiKey: stack.apiKey, maxRetries: 0 });
}, 120_000);

afterAll(async () => {
  await db?.close();
  await started?.close();
});

const usageFor = (requestId: string | null | undefined) => usageRowOf(stack, db, requestId);

/** A multipart upload of `audio` with `fields`, as the OpenAI clients encode it. */
function upload(audio: Uint8Array, fields: Record<string, string>): FormData {
  const form = new FormData();
  form.append("file", new File([audio], "speech.wav", { type: "audio/wav" }));
  for (const [name, value] of Object.entries(fields)) form.append(name, value);
  return form;
}

/** The engine's own answer to the same upload, asked directly. */
async function engine(path: string, audio: Uint8Array, fields: Record<string, string>): Promise<Response> {
  const res = await fetch(`${stack.simUrl}${path}`, { method: "POST", body: upload(audio, { model: MODEL, ...fields }) });
  expect(res.status).toBe(200);
  return res;
}

/** The `data:` payloads of an SSE body, parsed, without `[DONE]`. */
function events(text: string): Record<string, unknown>[] {
  return text
    .split("\n\n")
    .filter((e) => e.startsWith("data: ") && e !== "data: [DONE]")
    .map((e) => JSON.parse(e.slice(6)) as Record<string, unknown>);
}

type Chunk = { choices: { delta?: { content?: string } }[]; usage?: { prompt_tokens: number; completion_tokens: number } };
const textOf = (chunks: Chunk[]) => chunks.map((c) => c.choices.map((ch) => ch.delta?.content ?? "").join("")).join("");

describe("speech to text through the gateway", () => {
  it("transcribes with the openai client as the engine does, billing the audio's duration", async () => {
    const audio = wavFile({ seconds: 2.5 });
    const direct = (await (await engine("/v1/audio/transcriptions", audio, {})).json()) as { text: string };
    const { data, response } = await client.audio.transcriptions.create({ file: await toFile(audio, "speech.wav"), model: MODEL }).withResponse();
    expect(data.text).toBe(direct.text);
    expect(data.text.trim().split(/\s+/).length).toBeGreaterThan(3);
    expect(response.headers.get("x-switchyard-node")).toBe("local-1");
    const row = await usageFor(response.headers.get("x-request-id"));
    // vLLM's non-streamed answer reports only the duration: the tokens are unknown, the audio is billed.
    expect(row).toMatchObject({ endpoint: "transcriptions", model: MODEL, status: "ok", httpStatus: 200, streamed: false, audioMs: 2500, costMicros: 250 });
  });

  it("streams vLLM's transcription chunks, metering the engine's token usage, with the usage chunk only when asked", async () => {
    const audio = wavFile({ seconds: 4 });
    const direct = events(await (await engine("/v1/audio/transcriptions", audio, { stream: "true", stream_include_usage: "true" })).text()) as Chunk[];
    const engineUsage = direct.at(-1)?.usage;
    expect(engineUsage?.completion_tokens).toBeGreaterThan(0);

    const stream = await client.audio.transcriptions.create({ file: await toFile(audio, "speech.wav"), model: MODEL, stream: true }).withResponse();
    const chunks: Chunk[] = [];
    // vLLM streams chat-shaped chunks, not OpenAI's transcript.text.delta events: read them as they come.
    for await (const event of stream.data) chunks.push(event as unknown as Chunk);
    expect(chunks.length).toBeGreaterThan(2);
    expect(chunks.every((c) => c.usage === undefined)).toBe(true);
    expect(textOf(chunks)).toBe(textOf(direct));
    const row = await usageFor(stream.response.headers.get("x-request-id"));
    expect(row).toMatchObject({
      endpoint: "transcriptions",
      status: "ok",
      streamed: true,
      audioMs: 4000,
      promptTokens: engineUsage?.prompt_tokens,
      completionTokens: engineUsage?.completion_tokens,
      costMicros: 4 * MICROS_PER_SECOND,
    });

    const asked = await fetch(`${stack.gatewayUrl}/v1/audio/transcriptions`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack.apiKey}` },
      body: upload(audio, { model: MODEL, stream: "true", stream_include_usage: "true" }),
    });
    expect(asked.headers.get("content-type")).toContain("text/event-stream");
    const withUsage = events(await asked.text()) as Chunk[];
    expect(withUsage.at(-1)?.usage).toEqual(engineUsage);
  });

  it("translates, and splits audio over 30 seconds as the engine does, pricing each chunk", async () => {
    const audio = wavFile({ seconds: 61, sampleRate: 8000 });
    const direct = (await (await engine("/v1/audio/translations", audio, {})).json()) as { text: string };
    const { data, response } = await client.audio.translations.create({ file: await toFile(audio, "speech.wav"), model: MODEL }).withResponse();
    expect(data.text).toBe(direct.text);
    const row = await usageFor(response.headers.get("x-request-id"));
    expect(row).toMatchObject({ endpoint: "translations", status: "ok", audioMs: 61_000, costMicros: 61 * MICROS_PER_SECOND });
  });

  it("counts audio against spend budgets exactly: what fits is served, the rest refused before the engine", async () => {
    const poor = await newTenantKey(stack, "audio-budget");
    // 1,000 micro-USD: two 5-second uploads (500 each), not three.
    await adminJson(stack, "POST", "/budgets", { scope: "key", scope_id: poor.keyId, kind: "spend", period: "day", amount: 1000 });
    const tight = new OpenAI({ baseURL: `${stack.gatewayUrl}/v1`, apiKey: poor.key, maxRetries: 0 });
    const audio = wavFile({ seconds: 5 });
    const results: (number | "ok")[] = [];
    for (let i = 0; i < 3; i++) {
      try {
        await tight.audio.transcriptions.create({ file: await toFile(audio, "speech.wav"), model: MODEL });
        results.push("ok");
      } catch (e) {
        results.push(e instanceof OpenAI.APIError ? (e.status as number) : 0);
      }
    }
    expect(results).toEqual(["ok", "ok", 429]);
    // The two served were charged their audio, and nothing was left over for a third.
    const counters = await adminJson<{ budgets: { used: number; leased: number; free: number }[] }>(stack, "GET", `/counters/key/${poor.keyId}`);
    expect(counters.budgets[0]?.free).toBeLessThan(500);
    // Reports and the billing export carry the audio, from the hourly rollups.
    type Report = { data: { model: string; requests: number; audio_seconds: number; cost_micros: number }[] };
    const rows = async () => {
      await stack.runScheduled();
      const report = (await (await fetch(`${stack.gatewayUrl}/v1/usage?group_by=model`, { headers: { authorization: `Bearer ${poor.key}` } })).json()) as Report;
      return report.data.filter((r) => r.model === MODEL).map(({ requests, audio_seconds, cost_micros }) => ({ requests, audio_seconds, cost_micros }));
    };
    // The refused request is counted with no audio and no cost (its row is written in the background).
    const expected = [{ requests: 3, audio_seconds: 10, cost_micros: 1000 }];
    for (let i = 0; i < 50 && JSON.stringify(await rows()) !== JSON.stringify(expected); i++) await new Promise((r) => setTimeout(r, 200));
    expect(await rows()).toEqual(expected);
    const month = new Date().toISOString().slice(0, 7);
    const bill = await adminJson<{ tenants: { lines: { model: string; audio_seconds: number; amount_micros: number; description: string }[] }[] }>(
      stack,
      "GET",
      `/billing/export?period=${month}&tenant_id=${poor.tenantId}`,
    );
    expect(bill.tenants[0]?.lines).toEqual([expect.objectContaining({ model: MODEL, audio_seconds: 10, amount_micros: 1000 })]);
    expect(bill.tenants[0]?.lines[0]?.description).toContain("10 s of audio");
  });

  it("meters a stream cancelled midway (the whole upload, the tokens delivered) and frees the engine's slot", async () => {
    const audio = wavFile({ seconds: 25 });
    const controller = new AbortController();
    const res = await fetch(`${stack.gatewayUrl}/v1/audio/transcriptions`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack.apiKey}` },
      body: upload(audio, { model: MODEL, stream: "true" }),
      signal: controller.signal,
    });
    expect(res.status).toBe(200);
    const reader = res.body?.getReader();
    await reader?.read();
    controller.abort();
    const row = await usageRowOf(stack, db, res.headers.get("x-request-id"), 15_000);
    expect(row).toMatchObject({ endpoint: "transcriptions", status: "cancelled", audioMs: 25_000, costMicros: 25 * MICROS_PER_SECOND });
    // The engine stopped: nothing of this model runs any more.
    const deadline = Date.now() + 10_000;
    for (;;) {
      const metrics = await (await fetch(`${stack.simUrl}/metrics`)).text();
      const running = /vllm:num_requests_running\{[^}]*model_name="sim-whisper"[^}]*\} (\S+)/.exec(metrics)?.[1];
      if (running === "0.0" || running === "0") break;
      if (Date.now() > deadline) throw new Error(`sim-whisper still runs ${running} requests`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });
});
