import { describe, expect, inject, it } from "vitest";
import { conversations } from "../../schema/tables/index.ts";
import { admin, expectStatus, unique, type ErrorBody, type KeyJson, type List } from "./admin-helpers.ts";
import { eventually, flushNow, gateway, post, query } from "./helpers.ts";
import type { ConversationJson } from "../../worker/src/conversations/admin.ts";
import { MAX_AUDIT_BODY_BYTES, StreamCapture } from "../../worker/src/conversations/capture.ts";

/** A tenant with one environment in `mode`, a chat key and an admin key, made through the admin API. */
async function auditedTenant(mode: "off" | "metadata" | "full", tenantBody: Record<string, unknown> = {}) {
  const tenant = expectStatus(await admin<{ id: string }>("POST", "/tenants", { name: unique("audited"), ...tenantBody }), 201);
  const env = expectStatus(await admin<{ id: string; audit_mode: string }>("POST", "/environments", { tenant_id: tenant.id, name: "prod", audit_mode: mode }), 201);
  expect(env.audit_mode).toBe(mode);
  const key = expectStatus(await admin<KeyJson>("POST", "/keys", { environment_id: env.id, name: "app" }), 201);
  const adminKey = expectStatus(await admin<KeyJson>("POST", "/keys", { environment_id: env.id, name: "ops", scopes: ["admin"] }), 201);
  return { tenantId: tenant.id, environmentId: env.id, key: key.key ?? "", keyId: key.id, adminKey: adminKey.key ?? "" };
}

/** Flushes until the conversation of `requestId` can be read through the admin API. */
async function conversation(requestId: string, token?: string): Promise<ConversationJson> {
  return eventually(async () => {
    await flushNow();
    const res = await admin<ConversationJson>("GET", `/conversations/${requestId}`, undefined, token);
    return res.status === 200 ? res.body : undefined;
  }, 10_000);
}

const messages = [{ role: "user", content: "My card is 4111-1111-1111-1111, what is 2+2?" }];

describe("conversation audit", () => {
  it("records a full-mode chat completion with its request and response bodies, redacted by the tenant's rules", async () => {
    const t = await auditedTenant("full", { audit_redactions: ["\\d{4}-\\d{4}-\\d{4}-\\d{4}"] });
    const res = await post("/v1/chat/completions", { model: "sim-llama-8b", messages, max_tokens: 8 }, t.key);
    expect(res.status).toBe(200);
    const answer = await res.json<{ choices: { message: { content: string } }[]; usage: { prompt_tokens: number; completion_tokens: number } }>();
    const requestId = res.headers.get("x-request-id") ?? "";

    const c = await conversation(requestId);
    expect(c).toMatchObject({
      object: "conversation",
      request_id: requestId,
      tenant_id: t.tenantId,
      environment_id: t.environmentId,
      key_id: t.keyId,
      mode: "full",
      endpoint: "chat",
      model: "sim-llama-8b",
      status: "ok",
      http_status: 200,
      streamed: false,
      prompt_tokens: answer.usage.prompt_tokens,
      completion_tokens: answer.usage.completion_tokens,
      request_truncated: false,
      response_truncated: false,
    });
    expect(Date.parse(c.ended_at)).toBeGreaterThanOrEqual(Date.parse(c.started_at));
    expect(c.request_body).toContain("My card is [REDACTED], what is 2+2?");
    expect(c.request_body).not.toContain("4111");
    const stored = JSON.parse(c.response_body ?? "null") as typeof answer;
    expect(stored.choices[0]?.message.content).toBe(answer.choices[0]?.message.content);
  });

  it("records a streamed completion as its SSE data payloads, with the client's stream unchanged", async () => {
    const t = await auditedTenant("full");
    const res = await post("/v1/chat/completions", { model: "sim-llama-8b", messages, max_tokens: 6, stream: true }, t.key);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text.trimEnd().endsWith("data: [DONE]")).toBe(true);
    const delivered = text
      .split("\n")
      .filter((l) => l.startsWith("data: {"))
      .map((l) => (JSON.parse(l.slice(6)) as { choices: { delta: { content?: string } }[] }).choices[0]?.delta.content ?? "")
      .join("");

    const c = await conversation(res.headers.get("x-request-id") ?? "");
    expect(c).toMatchObject({ mode: "full", streamed: true, status: "ok", response_truncated: false });
    const payloads = (c.response_body ?? "").split("\n");
    expect(payloads.at(-1)).toBe("[DONE]");
    const chunks = payloads.slice(0, -1).map((p) => JSON.parse(p) as { choices: { delta?: { content?: string } }[]; usage?: unknown });
    expect(chunks.map((ch) => ch.choices[0]?.delta?.content ?? "").join("")).toBe(delivered);
    expect(delivered.length).toBeGreaterThan(0);
    expect(JSON.parse(c.request_body ?? "{}")).toMatchObject({ model: "sim-llama-8b", stream: true, messages });
  });

  it("records metadata without bodies in metadata mode, and nothing in off mode", async () => {
    const meta = await auditedTenant("metadata");
    const off = await auditedTenant("off");
    const m = await post("/v1/chat/completions", { model: "sim-llama-8b", messages, max_tokens: 4 }, meta.key);
    const o = await post("/v1/chat/completions", { model: "sim-llama-8b", messages, max_tokens: 4 }, off.key);
    expect([m.status, o.status]).toEqual([200, 200]);
    const c = await conversation(m.headers.get("x-request-id") ?? "");
    expect(c).toMatchObject({ mode: "metadata", tenant_id: meta.tenantId, status: "ok", request_body: null, response_body: null });
    expect(c.prompt_tokens).toBeGreaterThan(0);

    // The off request's usage is recorded, but no conversation.
    await flushNow();
    const missing = await admin<ErrorBody>("GET", `/conversations/${o.headers.get("x-request-id") ?? ""}`);
    expect(missing.status).toBe(404);
    const list = expectStatus(await admin<List<ConversationJson>>("GET", `/conversations?tenant_id=${off.tenantId}`), 200);
    expect(list.data).toEqual([]);
  });

  it("lists newest first with filters and pages, and exports the same as JSON lines", async () => {
    const t = await auditedTenant("metadata");
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await post("/v1/chat/completions", { model: "sim-llama-8b", messages, max_tokens: 2 }, t.key);
      expect(res.status).toBe(200);
      ids.push(res.headers.get("x-request-id") ?? "");
    }
    for (const id of ids) await conversation(id);
    const first = expectStatus(await admin<List<ConversationJson>>("GET", `/conversations?tenant_id=${t.tenantId}&key_id=${t.keyId}&model=sim-llama-8b&limit=2`), 200);
    expect(first.data.map((c) => c.request_id)).toEqual([ids[2], ids[1]]);
    expect(first.next_cursor).not.toBeNull();
    const second = expectStatus(await admin<List<ConversationJson>>("GET", `/conversations?tenant_id=${t.tenantId}&limit=2&cursor=${first.next_cursor ?? ""}`), 200);
    expect(second.data.map((c) => c.request_id)).toEqual([ids[0]]);
    expect(second.next_cursor).toBeNull();
    const future = new Date(Date.now() + 3_600_000).toISOString();
    const none = expectStatus(await admin<List<ConversationJson>>("GET", `/conversations?tenant_id=${t.tenantId}&start=${encodeURIComponent(future)}`), 200);
    expect(none.data).toEqual([]);
    const otherModel = expectStatus(await admin<List<ConversationJson>>("GET", `/conversations?environment_id=${t.environmentId}&model=sim-embed`), 200);
    expect(otherModel.data).toEqual([]);

    const res = await gateway(`/admin/conversations/export?tenant_id=${t.tenantId}`, { key: inject("adminToken") });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("application/x-ndjson");
    const lines = new TextDecoder().decode(await res.arrayBuffer()).trimEnd().split("\n").map((l) => JSON.parse(l) as ConversationJson);
    expect(lines.map((c) => c.request_id)).toEqual([ids[2], ids[1], ids[0]]);
  });

  it("shows a tenant admin key its own tenant's conversations only", async () => {
    const a = await auditedTenant("metadata");
    const b = await auditedTenant("metadata");
    const ra = await post("/v1/chat/completions", { model: "sim-llama-8b", messages, max_tokens: 2 }, a.key);
    const rb = await post("/v1/chat/completions", { model: "sim-llama-8b", messages, max_tokens: 2 }, b.key);
    const idA = ra.headers.get("x-request-id") ?? "";
    const idB = rb.headers.get("x-request-id") ?? "";
    await conversation(idA);
    await conversation(idB);

    expect((await conversation(idA, a.adminKey)).tenant_id).toBe(a.tenantId);
    const foreign = await admin<ErrorBody>("GET", `/conversations/${idB}`, undefined, a.adminKey);
    expect({ status: foreign.status, code: foreign.body.error.code }).toEqual({ status: 404, code: "not_found" });
    const named = await admin<ErrorBody>("GET", `/conversations?tenant_id=${b.tenantId}`, undefined, a.adminKey);
    expect(named.status).toBe(404);
    const own = expectStatus(await admin<List<ConversationJson>>("GET", "/conversations?limit=200", undefined, a.adminKey), 200);
    expect(own.data.map((c) => c.tenant_id)).toEqual([a.tenantId]);
    const exported = await gateway("/admin/conversations/export", { key: a.adminKey });
    expect(exported.status).toBe(200);
    const lines = new TextDecoder().decode(await exported.arrayBuffer()).trimEnd().split("\n").map((l) => JSON.parse(l) as ConversationJson);
    expect(lines.map((c) => c.request_id)).toEqual([idA]);
  });

  it("refuses an invalid redaction rule with a 400 naming it, and an unknown audit mode", async () => {
    const t = await auditedTenant("off");
    const bad = await admin<ErrorBody>("PATCH", `/tenants/${t.tenantId}`, { audit_redactions: ["ok", "(unclosed"] });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({ code: "invalid_value", param: "audit_redactions.1" });
    const mode = await admin<ErrorBody>("PATCH", `/environments/${t.environmentId}`, { audit_mode: "everything" });
    expect(mode.status).toBe(400);
    const set = expectStatus(await admin<{ audit_redactions: string[]; audit_retention_days: number }>("PATCH", `/tenants/${t.tenantId}`, { audit_redactions: ["sk-[a-z]+"], audit_retention_days: 30 }), 200);
    expect(set).toMatchObject({ audit_redactions: ["sk-[a-z]+"], audit_retention_days: 30 });
    const env = expectStatus(await admin<{ audit_mode: string }>("PATCH", `/environments/${t.environmentId}`, { audit_mode: "full" }), 200);
    expect(env.audit_mode).toBe("full");
  });

  it("deletes conversations older than the tenant's retention in the scheduled job, and keeps newer ones", async () => {
    const t = await auditedTenant("metadata", { audit_retention_days: 7 });
    const row = (id: string, daysAgo: number) => ({
      id,
      at: new Date(Date.now() - daysAgo * 86_400_000),
      endedAt: new Date(Date.now() - daysAgo * 86_400_000 + 10),
      tenantId: t.tenantId,
      environmentId: t.environmentId,
      apiKeyId: t.keyId,
      mode: "metadata" as const,
      endpoint: "chat",
      model: "sim-llama-8b",
      status: "ok",
      httpStatus: 200,
      streamed: false,
    });
    const old = `req_old_${crypto.randomUUID().slice(0, 8)}`;
    const recent = `req_recent_${crypto.randomUUID().slice(0, 8)}`;
    await query((db) => db.insert(conversations).values([row(old, 8), row(recent, 6)]));
    expect((await admin("GET", `/conversations/${old}`)).status).toBe(200);
    await flushNow();
    expect((await admin("GET", `/conversations/${old}`)).status).toBe(404);
    expect((await admin("GET", `/conversations/${recent}`)).status).toBe(200);
  });
});

describe("the stream capture of full audit", () => {
  const bytes = (text: string) => new TextEncoder().encode(text);

  it("keeps the data payloads of any SSE framing and drops comments and event lines", () => {
    const capture = new StreamCapture();
    capture.push(bytes(': keep-alive\r\n\r\nevent: message\r\ndata: {"a":1}\r\n\r\ndata:{"b'));
    capture.push(bytes('":2}\n\ndata: [DONE]\n\n'));
    expect(capture.payloads()).toEqual({ text: '{"a":1}\n{"b":2}\n[DONE]', truncated: false });
  });

  it("stops at 1 MB and says the body was truncated", () => {
    const capture = new StreamCapture();
    const line = bytes(`data: ${"x".repeat(64 * 1024 - 8)}\n\n`);
    for (let i = 0; i < 20; i++) capture.push(line);
    const { text, truncated } = capture.payloads();
    expect(truncated).toBe(true);
    expect(text.length).toBeLessThanOrEqual(MAX_AUDIT_BODY_BYTES);
    expect(text.length).toBeGreaterThan(MAX_AUDIT_BODY_BYTES - 64 * 1024);
  });
});
