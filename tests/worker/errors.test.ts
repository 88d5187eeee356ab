import { describe, expect, it } from "vitest";
import { inject } from "vitest";
import { gateway, post } from "./helpers.ts";

const chat = { model: "sim-llama-8b", messages: [{ role: "user", content: "hi" }] };

async function expectError(res: Response, status: number, code: string, param: string | null = null) {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toContain("application/json");
  const body = await res.json<{ error: { message: string; type: string; param: string | null; code: string } }>();
  expect(body.error.code).toBe(code);
  expect(body.error.param).toBe(param);
  expect(body.error.message.length).toBeGreaterThan(10);
  expect(typeof body.error.type).toBe("string");
  return body.error;
}

describe("authentication", () => {
  it("returns 401 missing_api_key without an Authorization header", async () => {
    const err = await expectError(await post("/v1/chat/completions", chat, null), 401, "missing_api_key");
    expect(err.message).toContain("Bearer");
  });

  it("returns 401 invalid_api_key for a malformed key", async () => {
    await expectError(await post("/v1/chat/completions", chat, "not-a-key"), 401, "invalid_api_key");
  });

  it("returns 401 invalid_api_key for a well-formed key that does not exist", async () => {
    await expectError(await post("/v1/chat/completions", chat, `sk-sy-${"A".repeat(43)}`), 401, "invalid_api_key");
  });

  it("answers unknown, malformed, revoked and expired keys with the same 401, so keys cannot be enumerated", async () => {
    const bodies = [];
    for (const key of [`sk-sy-${"B".repeat(43)}`, "garbage", inject("keys").revoked, inject("keys").expired]) {
      const res = await post("/v1/chat/completions", chat, key);
      expect(res.status).toBe(401);
      bodies.push(await res.text());
    }
    expect(new Set(bodies).size).toBe(1);
    expect(bodies[0]).toContain("invalid_api_key");
  });

  it("returns 403 for a key of a suspended tenant", async () => {
    await expectError(await post("/v1/chat/completions", chat, inject("keys").suspended), 403, "tenant_suspended");
  });

  it("returns 403 when the key lacks the scope of the endpoint", async () => {
    const err = await expectError(await post("/v1/chat/completions", chat, inject("keys").embeddingsOnly), 403, "permission_denied");
    expect(err.message).toContain("'chat' scope");
  });
});

describe("request validation", () => {
  it("returns 400 invalid_json for a body that is not JSON", async () => {
    await expectError(await gateway("/v1/chat/completions", { method: "POST", body: "{nope" }), 400, "invalid_json");
  });

  it("names the missing field", async () => {
    await expectError(await post("/v1/chat/completions", { model: "sim-llama-8b" }), 400, "missing_field", "messages");
    await expectError(await post("/v1/chat/completions", { messages: chat.messages }), 400, "missing_field", "model");
    await expectError(await post("/v1/embeddings", { model: "sim-embed" }), 400, "missing_field", "input");
    await expectError(await post("/v1/completions", { model: "sim-llama-8b" }), 400, "missing_field", "prompt");
  });

  it("names the invalid field", async () => {
    await expectError(await post("/v1/chat/completions", { ...chat, messages: [{ content: "x" }] }), 400, "invalid_value", "messages[0].role");
    await expectError(await post("/v1/chat/completions", { ...chat, max_tokens: -3 }), 400, "invalid_value", "max_tokens");
    await expectError(await post("/v1/chat/completions", { ...chat, temperature: "hot" }), 400, "invalid_value", "temperature");
    await expectError(await post("/v1/chat/completions", { ...chat, stream_options: { include_usage: true } }), 400, "invalid_value", "stream_options");
  });

  it("returns 400 naming messages[i].role for a role OpenAI does not know, and accepts every role it does", async () => {
    const res = await post("/v1/chat/completions", { ...chat, messages: [{ role: "wizard", content: "x" }] });
    expect(res.headers.get("retry-after")).toBeNull();
    const err = await expectError(res, 400, "invalid_value", "messages[0].role");
    expect(err.type).toBe("invalid_request_error");
    expect(err.message).toContain("'wizard'");
    expect(err.message).toContain("'developer'");
    const second = await post("/v1/chat/completions", { ...chat, messages: [{ role: "user", content: "x" }, { role: "Assistant", content: "y" }] });
    await expectError(second, 400, "invalid_value", "messages[1].role");
    const roles = ["system", "developer", "user", "assistant", "tool", "function"].map((role) => ({ role, content: "x", name: "f", tool_call_id: "call_1" }));
    for (const message of roles) {
      const ok = await post("/v1/chat/completions", { ...chat, messages: [message, { role: "user", content: "hi" }], max_tokens: 1 });
      expect(ok.status).toBe(200);
      await ok.arrayBuffer();
    }
  });

  it("returns 404 model_not_found for a model outside the catalogue", async () => {
    const err = await expectError(await post("/v1/chat/completions", { ...chat, model: "gpt-nope" }), 404, "model_not_found", "model");
    expect(err.message).toContain("gpt-nope");
  });

  it("returns 404 for a catalogue model the key is not allowed to use", async () => {
    await expectError(
      await post("/v1/embeddings", { model: "sim-embed", input: "x" }, inject("keys").chatOnlyModel),
      404,
      "model_not_found",
      "model",
    );
  });

  it("returns 400 when a chat request names an embedding model", async () => {
    await expectError(await post("/v1/chat/completions", { ...chat, model: "sim-embed" }), 400, "invalid_value", "model");
  });

  it("answers unknown routes with a JSON 404, not HTML", async () => {
    await expectError(await gateway("/v2/whatever"), 404, "not_found");
  });
});

describe("health", () => {
  it("answers /health without a key", async () => {
    const res = await gateway("/health", { key: null });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ok" });
  });

  it("checks Redis and Postgres on /health?deep=1", async () => {
    const res = await gateway("/health?deep=1", { key: null });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ok", checks: { redis: "ok", postgres: "ok" } });
  });
});
