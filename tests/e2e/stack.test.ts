/**
 * End to end: the real local stack (wrangler dev + backplane + simulated engine + Postgres + Redis,
 * started exactly as `npm start` does) driven by the official `openai` client.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { eq } from "drizzle-orm";
import OpenAI from "openai";
import type { ChatCompletionCreateParamsStreaming } from "openai/resources/chat/completions";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDb, type NodeDb } from "../../dev/db.ts";
import type { Stack } from "../../dev/stack.ts";
import { nodes, spotEvents } from "../../schema/tables/index.ts";
import { startFakeAws, type FakeAws } from "../support/fake-metadata.ts";
import { startTestStack, type TestStack } from "../support/e2e-stack.ts";
import { usageRowOf } from "../support/e2e-calls.ts";

let stack: Stack;
let started: TestStack;
let client: OpenAI;
let db: NodeDb;
let aws: FakeAws;

const usageFor = (requestId: string | null | undefined) => usageRowOf(stack, db, requestId);

beforeAll(async () => {
  aws = await startFakeAws();
  started = await startTestStack("stack", {
    simArgs: ["--ttft-ms", "10", "--inter-token-ms", "25"],
    backplaneEnv: { BACKPLANE_SPOT_AWS: "true", BACKPLANE_AWS_METADATA_URL: aws.url, BACKPLANE_SPOT_POLL_INTERVAL_MS: "200" },
  });
  stack = started.stack;
  client = new OpenAI({ baseURL: `${stack.gatewayUrl}/v1`, apiKey: stack.apiKey, maxRetries: 0 });
  db = openDb(started.databaseUrl);
}, 120_000);

afterAll(async () => {
  await db?.close();
  await started?.close();
  await aws?.close();
});

const messages = [{ role: "user" as const, content: "What is a switchyard?" }];

describe("the local stack through the openai client", () => {
  it("lists the models", async () => {
    const models = await client.models.list();
    // sim-embed:latest is the demo embedding model's alias (dev/seed.ts), listed as its own entry.
    expect(models.data.map((m) => m.id).sort()).toEqual(["council/default", "sim-embed", "sim-embed:latest", "sim-llama-8b", "sim-whisper"]);
  });

  it("answers a chat completion and records the engine's usage", async () => {
    const { data, response } = await client.chat.completions.create({ model: "sim-llama-8b", messages, max_tokens: 10 }).withResponse();
    expect(data.choices[0]?.message.content?.length).toBeGreaterThan(0);
    expect(data.usage?.completion_tokens).toBe(10);
    const row = await usageFor(response.headers.get("x-request-id") ?? "");
    expect(row).toMatchObject({
      tenantId: "ten_demo",
      status: "ok",
      streamed: false,
      promptTokens: data.usage?.prompt_tokens,
      completionTokens: 10,
      nodeId: stack.nodeId,
    });
  });

  it("streams tokens as they are generated and records the same usage the engine reports", async () => {
    const request = { model: "sim-llama-8b", messages, max_tokens: 12, seed: 3 };
    const reference = await client.chat.completions.create(request);

    // The same seeded request again: no-store keeps the response cache (docs/caching.md) out of it, so the engine streams it.
    const { data: stream, response } = await client.chat.completions.create({ ...request, stream: true }, { headers: { "cache-control": "no-store" } }).withResponse();
    const arrivals: number[] = [];
    let text = "";
    let sawUsage = false;
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta.content;
      if (delta) {
        arrivals.push(performance.now());
        text += delta;
      }
      if (chunk.usage) sawUsage = true;
    }
    expect(text).toBe(reference.choices[0]?.message.content);
    expect(sawUsage).toBe(false);
    // 12 tokens 25 ms apart: a buffered stream would deliver them within a few ms of each other.
    expect(arrivals).toHaveLength(12);
    expect((arrivals.at(-1) ?? 0) - (arrivals[0] ?? 0)).toBeGreaterThan(150);

    const row = await usageFor(response.headers.get("x-request-id") ?? "");
    expect(row).toMatchObject({ streamed: true, status: "ok", promptTokens: reference.usage?.prompt_tokens, completionTokens: 12 });
  });

  it("delivers the usage chunk when the client asks for it", async () => {
    const stream = await client.chat.completions.create({ model: "sim-llama-8b", messages, max_tokens: 4, stream: true, stream_options: { include_usage: true } });
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) usage ??= chunk.usage ?? undefined;
    expect(usage?.completion_tokens).toBe(4);
  });

  it("answers completions and embeddings", async () => {
    const completion = await client.completions.create({ model: "sim-llama-8b", prompt: "Once upon a time", max_tokens: 5 });
    expect(completion.object).toBe("text_completion");
    expect(completion.usage?.completion_tokens).toBe(5);

    const embedding = await client.embeddings.create({ model: "sim-embed", input: "hello" });
    expect(embedding.data[0]?.embedding.length).toBe(384);
    expect(embedding.usage.prompt_tokens).toBeGreaterThan(0);
  });

  it("refuses a wrong key with 401", async () => {
    const wrong = new OpenAI({ baseURL: `${stack.gatewayUrl}/v1`, apiKey: "sk-sy-wrong", maxRetries: 0 });
    await expect(wrong.models.list()).rejects.toMatchObject({ status: 401, code: "invalid_api_key" });
  });

  it("answers 404 for an unknown model", async () => {
    await expect(client.chat.completions.create({ model: "no-such-model", messages })).rejects.toMatchObject({
      status: 404,
      code: "model_not_found",
    });
  });

  it("counts every request in /admin/metrics (summed in Redis) and tells the client its own time in Server-Timing", async () => {
    const scrape = async (): Promise<string> => {
      const res = await fetch(`${stack.gatewayUrl}/admin/metrics`, { headers: { authorization: `Bearer ${stack.adminToken}` } });
      expect(res.status).toBe(200);
      return res.text();
    };
    const value = (text: string, series: string): number => {
      const line = text.split("\n").find((l) => l.startsWith(`${series} `));
      return line === undefined ? 0 : Number(line.slice(series.length + 1));
    };
    const served = 'switchyard_requests_total{model="sim-llama-8b",node="local-1",region="local",route="chat",status="200"}';
    const badKey = 'switchyard_requests_total{model="",node="",region="",route="models",status="401"}';
    const before = await scrape();

    const { data, response } = await client.chat.completions.create({ model: "sim-llama-8b", messages, max_tokens: 7 }).withResponse();
    // The gateway's own time, its routing and admission, and the node's first byte.
    const timing = response.headers.get("server-timing") ?? "";
    expect(timing).toMatch(/^gateway;dur=\d+, routing;dur=\d+, admission;dur=\d+, upstream;desc="node first byte";dur=\d+$/);
    const stream = await client.chat.completions.create({ model: "sim-llama-8b", messages, max_tokens: 5, stream: true, stream_options: { include_usage: true } });
    let streamUsage = { prompt_tokens: 0, completion_tokens: 0 };
    for await (const chunk of stream) if (chunk.usage) streamUsage = chunk.usage;
    const wrong = await fetch(`${stack.gatewayUrl}/v1/models`, { headers: { authorization: "Bearer sk-sy-wrong" } });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get("server-timing")).toMatch(/^gateway;dur=\d+$/);
    await wrong.arrayBuffer();

    // The isolate's counts reach Redis with the next request's end writes (or the scheduled job).
    let after = "";
    for (let i = 0; i < 40; i++) {
      after = await scrape();
      if (value(after, served) >= value(before, served) + 2 && value(after, "switchyard_request_duration_seconds_count{route=\"chat\"}") >= value(before, 'switchyard_request_duration_seconds_count{route="chat"}') + 2) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(value(after, served) - value(before, served)).toBe(2);
    expect(value(after, badKey) - value(before, badKey)).toBe(1);
    expect(value(after, 'switchyard_admission_refusals_total{layer="auth",reason="invalid_key"}') - value(before, 'switchyard_admission_refusals_total{layer="auth",reason="invalid_key"}')).toBe(1);
    const tokens = (dir: string, text: string) => value(text, `switchyard_tokens_total{direction="${dir}",model="sim-llama-8b"}`);
    expect(tokens("out", after) - tokens("out", before)).toBe(7 + streamUsage.completion_tokens);
    expect(tokens("in", after) - tokens("in", before)).toBe((data.usage?.prompt_tokens ?? 0) + streamUsage.prompt_tokens);
    expect(value(after, 'switchyard_request_duration_seconds_count{route="chat"}') - value(before, 'switchyard_request_duration_seconds_count{route="chat"}')).toBe(2);
    expect(value(after, 'switchyard_time_to_first_token_seconds_count{route="chat"}') - value(before, 'switchyard_time_to_first_token_seconds_count{route="chat"}')).toBe(1);
    expect(value(after, 'switchyard_request_duration_seconds_bucket{route="chat",le="+Inf"}')).toBe(value(after, 'switchyard_request_duration_seconds_count{route="chat"}'));
    // The fleet, from the registry and the heartbeats.
    expect(value(after, 'switchyard_node_up{node="local-1",region="local"}')).toBe(1);
    expect(value(after, 'switchyard_node_circuit_open{node="local-1",region="local"}')).toBe(0);
    expect(after).toMatch(/^switchyard_node_capacity\{node="local-1",region="local"\} [1-9]/m);
    // The backplane counts the heartbeats the gateway took.
    const backplaneMetrics = await (await fetch(`${stack.backplaneUrl}/metrics`)).text();
    expect(Number(/^switchyard_backplane_heartbeats_total\{result="ok"\} (\d+)$/m.exec(backplaneMetrics)?.[1] ?? 0)).toBeGreaterThan(0);
    // The exposition follows Prometheus' conventions (promtool, Debian's prometheus package, where installed).
    const promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"].find((p) => existsSync(p));
    if (promtool) {
      const lint = await new Promise<string>((resolve) => {
        const child = execFile(promtool, ["check", "metrics"], { timeout: 30_000 }, (err, stdout, stderr) => resolve(`${err ? "failed\n" : ""}${stdout}${stderr}`));
        child.stdin?.end(after);
      });
      expect(lint).toBe("");
    }
  });

  it("surfaces an engine failure in the middle of a stream as an error, not a silent truncation", async () => {
    const params = { model: "sim-llama-8b", messages, stream: true, sim_fault: "error_mid_stream", sim_fault_after: 3 } as ChatCompletionCreateParamsStreaming;
    const stream = await client.chat.completions.create(params);
    let tokens = 0;
    const consume = async () => {
      for await (const chunk of stream) if (chunk.choices[0]?.delta.content) tokens++;
    };
    await expect(consume()).rejects.toThrow();
    expect(tokens).toBe(3);
  });

  it("meters a stream the client abandons midway: cancelled, with what was delivered, and stops the engine", async () => {
    const aborts = async () => {
      const text = await (await fetch(`${stack.simUrl}/metrics`)).text();
      return Number(/^vllm:request_success_total\{[^}]*finished_reason="abort"[^}]*\} (\S+)$/m.exec(text)?.[1] ?? "0");
    };
    const abortsBefore = await aborts();
    const { data: stream, response } = await client.chat.completions.create({ model: "sim-llama-8b", messages, max_tokens: 200, stream: true }).withResponse();
    let received = 0;
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) received++;
      if (received === 5) break; // leaving the loop aborts the HTTP request
    }
    const row = await usageFor(response.headers.get("x-request-id") ?? "");
    expect(row).toMatchObject({ status: "cancelled", streamed: true, errorCode: "client_cancelled", httpStatus: 200 });
    // Completion: the chunks that left the gateway (at least what the client read, far short of 200).
    expect(row.completionTokens).toBeGreaterThanOrEqual(5);
    expect(row.completionTokens).toBeLessThan(50);
    // Prompt: the engine never sent its usage, so the gateway's estimate of the prompt (4 characters a token).
    expect(row.promptTokens).toBe(Math.ceil((messages[0]?.content.length ?? 0) / 4));
    expect(row.costMicros).toBeGreaterThan(0);
    // The cancel reached the engine: it aborted the request instead of generating 200 tokens for nobody.
    await expect.poll(aborts, { timeout: 5_000 }).toBe(abortsBefore + 1);
  });

  it("registered its node from the backplane's heartbeats, without manual steps", async () => {
    const [row] = await db.db.select().from(nodes).where(eq(nodes.id, stack.nodeId));
    expect(row).toMatchObject({ regionId: "local", url: stack.backplaneUrl, models: ["sim-embed", "sim-llama-8b", "sim-whisper"], reportedStatus: "ready" });
  });

  // Last: it drains the only node.
  it("drains the node on a spot notice: the gateway records it and routes no new request there", async () => {
    const time = new Date(Date.now() + 120_000).toISOString().replace(/\.\d+Z$/, "Z");
    aws.interrupt("terminate", time);
    const deadline = Date.now() + 10_000;
    let events: (typeof spotEvents.$inferSelect)[] = [];
    while (events.length === 0 && Date.now() < deadline) {
      events = await db.db.select().from(spotEvents).where(eq(spotEvents.nodeId, stack.nodeId));
      if (events.length === 0) await new Promise((r) => setTimeout(r, 100));
    }
    expect(events[0]).toMatchObject({ provider: "aws", action: "terminate" });
    expect(events[0]?.deadline?.toISOString()).toBe(new Date(time).toISOString());
    // The worker's isolate may keep its routing view for ROUTING_CACHE_ISOLATE_SECONDS (2 s).
    await new Promise((r) => setTimeout(r, 2_100));
    await expect(client.chat.completions.create({ model: "sim-llama-8b", messages })).rejects.toMatchObject({ status: 503, code: "no_capacity" });
  });
});
