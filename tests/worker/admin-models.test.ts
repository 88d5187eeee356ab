import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { usageOutboxKey } from "../../worker/src/metering/flush.ts";
import { enqueue } from "../../worker/src/platform/outbox.ts";
import { admin } from "./admin-helpers.ts";
import { flushNow, gateway, redis } from "./helpers.ts";

async function listedModels(): Promise<string[]> {
  const res = await gateway("/v1/models");
  return (await res.json<{ data: { id: string }[] }>()).data.map((m) => m.id);
}

describe("model catalogue through the admin API", () => {
  it("creates, lists, updates and deactivates a model, and /v1/models follows within seconds", async () => {
    const id = `cat-${crypto.randomUUID().slice(0, 8)}`;
    const created = await admin<{ id: string; input_price_per_m_tokens: number; active: boolean }>("PUT", `/models/${id}`, {
      family: "qwen",
      context_length: 32768,
      input_price_per_m_tokens: 0.15,
      output_price_per_m_tokens: 0.6,
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ id, input_price_per_m_tokens: 0.15, active: true });
    await new Promise((r) => setTimeout(r, 1_100)); // ROUTING_CACHE_ISOLATE_SECONDS=1 in the test bindings
    expect(await listedModels()).toContain(id);

    const updated = await admin<{ output_price_per_m_tokens: number }>("PUT", `/models/${id}`, { context_length: 32768, output_price_per_m_tokens: 0.9 });
    expect(updated.status).toBe(200);
    expect(updated.body.output_price_per_m_tokens).toBe(0.9);
    const list = await admin<{ data: { id: string }[] }>("GET", "/models");
    expect(list.body.data.map((m) => m.id)).toContain(id);

    const removed = await admin<{ active: boolean }>("DELETE", `/models/${id}`);
    expect(removed.body.active).toBe(false);
    await new Promise((r) => setTimeout(r, 1_100));
    expect(await listedModels()).not.toContain(id);
  });

  it("prices transcription models per minute of audio, shown in /v1/models", async () => {
    const id = `stt-${crypto.randomUUID().slice(0, 8)}`;
    const created = await admin<{ kind: string; audio_price_per_minute: number | null }>("PUT", `/models/${id}`, { kind: "transcription", context_length: 448, audio_price_per_minute: 0.006 });
    expect(created.body).toMatchObject({ kind: "transcription", audio_price_per_minute: 0.006 });
    await new Promise((r) => setTimeout(r, 1_100));
    const listed = (await (await gateway("/v1/models")).json<{ data: { id: string; kind: string; pricing: { audio_per_minute: number | null } }[] }>()).data;
    expect(listed.find((m) => m.id === id)).toMatchObject({ kind: "transcription", pricing: { audio_per_minute: 0.006 } });
    expect(listed.find((m) => m.id === "sim-llama-8b")?.pricing.audio_per_minute).toBeNull();
    const cleared = await admin<{ audio_price_per_minute: number | null }>("PUT", `/models/${id}`, { audio_price_per_minute: null });
    expect(cleared.body.audio_price_per_minute).toBeNull();
    const negative = await admin<{ error: { param: string } }>("PUT", `/models/${id}`, { audio_price_per_minute: -1 });
    expect(negative).toMatchObject({ status: 400, body: { error: { param: "audio_price_per_minute" } } });
    await admin("DELETE", `/models/${id}`);
  });

  it("refuses invalid bodies naming the field, and anyone but the operator", async () => {
    const bad = await admin<{ error: { param: string } }>("PUT", "/models/x-model", { context_length: -1 });
    expect(bad.status).toBe(400);
    expect(bad.body.error.param).toBe("context_length");
    const anonymous = await admin("GET", "/models", undefined, null);
    expect(anonymous.status).toBe(401);
  });

  it("shows the usage backlog waiting for the scheduled job in /admin/metrics", async () => {
    await flushNow();
    await enqueue(redis(), usageOutboxKey(env.REDIS_PREFIX), {
      id: `req_backlog_${crypto.randomUUID()}`,
      at: new Date().toISOString(),
      tenantId: "ten_backlog",
      environmentId: "env_backlog",
      apiKeyId: "key_backlog",
      endpoint: "chat",
      model: "sim-llama-8b",
      regionId: null,
      nodeId: null,
      status: "ok",
      httpStatus: 200,
      streamed: false,
      promptTokens: 1,
      completionTokens: 1,
      cachedPromptTokens: 0,
      ttftMs: 1,
      latencyMs: 1,
      costMicros: 0,
      errorCode: null,
    });
    const res = await import("cloudflare:workers").then(({ exports }) =>
      exports.default.fetch(new Request("http://gateway.test/admin/metrics", { headers: { authorization: `Bearer ${env.ADMIN_TOKEN}` } })),
    );
    const text = await res.text();
    expect(text).toMatch(/switchyard_outbox_backlog\{queue="usage"\} [1-9]/);
    await flushNow();
    const after = await import("cloudflare:workers").then(({ exports }) =>
      exports.default.fetch(new Request("http://gateway.test/admin/metrics", { headers: { authorization: `Bearer ${env.ADMIN_TOKEN}` } })),
    );
    expect(await after.text()).toContain('switchyard_outbox_backlog{queue="usage"} 0');
  });
});
