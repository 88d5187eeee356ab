/**
 * The benchmark's gateway under plain workerd (bench/lib/edge.ts, bench/lib/workerd.ts): the real
 * worker bundle with every policy on, one backplane with a simulated engine, the official `openai`
 * client as the caller; and the bare Hono forwarder the worker's CPU is compared with.
 */
import { inArray } from "drizzle-orm";
import { Redis } from "ioredis";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEdge, waitForNodes, type Edge } from "../../bench/lib/edge.ts";
import { ROOT, startHonoForwarder, type Workerd } from "../../bench/lib/workerd.ts";
import { openDb, type NodeDb } from "../../dev/db.ts";
import { LocalNode } from "../../dev/nodes.ts";
import { budgets, usageRecords } from "../../schema/tables/index.ts";
import { PG_ADMIN_URL, REDIS_URL, uniqueSuffix } from "../support/fixtures.ts";

const suffix = uniqueSuffix();
const redisPrefix = `sy:benchtest:${suffix}:`;
const databaseName = `sy_benchtest_${suffix}`;
const messages = [{ role: "user" as const, content: "What is a switchyard?" }];

let edge: Edge;
let node: LocalNode;
let forwarder: Workerd | undefined;
let db: NodeDb;
let redis: Redis;
let client: OpenAI;

beforeAll(async () => {
  const started = Date.now();
  edge = await startEdge({ pgAdminUrl: PG_ADMIN_URL, redisUrl: REDIS_URL, redisPrefix, databaseName });
  const edgeMs = Date.now() - started;
  db = openDb(edge.databaseUrl);
  redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  redis.on("error", () => {});
  node = new LocalNode(
    {
      id: "bench-1",
      region: edge.regionId,
      simArgs: ["--ttft-ms", "0", "--inter-token-ms", "0", "--output-tokens", "12"],
      // The first heartbeat goes out at start; a short interval only speeds up a retry.
      backplaneEnv: { BACKPLANE_HEARTBEAT_INTERVAL_MS: "1000" },
      simName: "sim",
      backplaneName: "backplane",
    },
    { root: ROOT, host: "127.0.0.1", gatewayUrl: edge.url, masterSecret: edge.nodeSigningSecret, echo: false, db, redis, redisPrefix },
  );
  await node.startSim();
  await node.startBackplane();
  await waitForNodes(edge, [node.id]);
  console.log(`edge up in ${edgeMs} ms, node routed after ${Date.now() - started} ms`);
  client = new OpenAI({ baseURL: `${edge.url}/v1`, apiKey: edge.apiKey, maxRetries: 0 });
}, 60_000);

afterAll(async () => {
  await forwarder?.close();
  // The backplane first, so its last (draining) heartbeat still reaches the worker.
  await node?.close();
  await db?.close();
  redis?.disconnect();
  await edge?.close();
});

describe("the gateway under plain workerd", () => {
  it("serves the real worker with every policy configured", async () => {
    const [budget] = await db.db.select().from(budgets);
    expect(budget).toMatchObject({ scope: "tenant", scopeId: edge.tenantId, kind: "tokens", period: "month" });
    for (const layer of ["GLOBAL", "TENANT", "ENVIRONMENT", "KEY"]) {
      expect(Number(edge.vars[`LIMIT_${layer}_RPM`])).toBeGreaterThan(0);
      expect(Number(edge.vars[`LIMIT_${layer}_TPM`])).toBeGreaterThan(0);
    }
    expect(Number(edge.vars.LIMIT_TENANT_CONCURRENCY)).toBeGreaterThan(0);
    expect(Number(edge.vars.LIMIT_KEY_CONCURRENCY)).toBeGreaterThan(0);
    const health = await fetch(`${edge.url}/health?deep=1`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: "ok", checks: { redis: "ok", postgres: "ok" } });
  });

  it("answers a chat completion and a streamed one through the node, and meters both into Postgres", async () => {
    const { data, response } = await client.chat.completions.create({ model: "sim-llama-8b", messages, max_tokens: 8 }).withResponse();
    expect(response.status).toBe(200);
    expect(data.choices[0]?.message.content?.length).toBeGreaterThan(0);
    expect(data.usage?.completion_tokens).toBe(8);
    // Every rate-limit layer ran: the tightest layer's OpenAI headers are set.
    expect(response.headers.get("x-ratelimit-limit-requests")).toBe(edge.vars.LIMIT_KEY_RPM);
    expect(response.headers.get("x-ratelimit-limit-tokens")).toBe(edge.vars.LIMIT_KEY_TPM);

    const { data: stream, response: streamed } = await client.chat.completions
      .create({ model: "sim-llama-8b", messages, max_tokens: 8, stream: true, stream_options: { include_usage: true } })
      .withResponse();
    expect(streamed.headers.get("content-type")).toContain("text/event-stream");
    let text = "";
    let completionTokens: number | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      if (chunk.usage) completionTokens = chunk.usage.completion_tokens;
    }
    expect(text.length).toBeGreaterThan(0);
    expect(completionTokens).toBe(8);

    const ids = [response.headers.get("x-request-id"), streamed.headers.get("x-request-id")].filter((id): id is string => id !== null);
    expect(ids).toHaveLength(2);
    // Metering runs in waitUntil after the response; the Cron Trigger job then moves it to Postgres.
    const deadline = Date.now() + 5_000;
    let rows: (typeof usageRecords.$inferSelect)[] = [];
    while (rows.length < 2 && Date.now() < deadline) {
      await edge.runScheduled();
      rows = await db.db.select().from(usageRecords).where(inArray(usageRecords.id, ids));
      if (rows.length < 2) await new Promise((r) => setTimeout(r, 100));
    }
    expect(rows.map((r) => ({ id: r.id, tenant: r.tenantId, node: r.nodeId, status: r.status, out: r.completionTokens })).sort((a, b) => a.id.localeCompare(b.id))).toEqual(
      ids.map((id) => ({ id, tenant: edge.tenantId, node: node.id, status: "ok", out: 8 })).sort((a, b) => a.id.localeCompare(b.id)),
    );
  });

  it("the bare Hono forwarder on workerd passes requests and answers through unchanged", async () => {
    forwarder = await startHonoForwarder({ upstream: node.simUrl });
    const body = JSON.stringify({ model: "sim-llama-8b", messages, max_tokens: 6, seed: 7 });
    const send = (base: string, stream: boolean) =>
      fetch(`${base}/v1/chat/completions?probe=1`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-probe": "yes" },
        body: stream ? JSON.stringify({ ...JSON.parse(body), stream: true }) : body,
      });
    const [direct, forwarded] = await Promise.all([send(node.simUrl, false), send(forwarder.url, false)]);
    expect(forwarded.status).toBe(direct.status);
    expect(forwarded.headers.get("content-type")).toBe(direct.headers.get("content-type"));
    const [a, b] = (await Promise.all([direct.json(), forwarded.json()])) as { id: string; created: number }[];
    // Only the per-response id and timestamp differ between two answers of the engine.
    expect({ ...b, id: "", created: 0 }).toEqual({ ...a, id: "", created: 0 });

    const [directStream, forwardedStream] = await Promise.all([send(node.simUrl, true), send(forwarder.url, true)]);
    expect(forwardedStream.headers.get("content-type")).toBe(directStream.headers.get("content-type"));
    const normalise = (sse: string) => sse.replace(/"id":"[^"]*"/g, '"id":""').replace(/"created":\d+/g, '"created":0');
    const [sa, sb] = await Promise.all([directStream.text(), forwardedStream.text()]);
    expect(sb).toContain("data: [DONE]");
    expect(normalise(sb)).toBe(normalise(sa));
  });
});
