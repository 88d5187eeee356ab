import { describe, expect, it } from "vitest";
import { inject } from "vitest";
import { gateway } from "./helpers.ts";

const message = { model: "sim-llama-8b", max_tokens: 16, messages: [{ role: "user", content: "hi" }] };

/** POSTs to an Anthropic route with the key in `x-api-key`, as Anthropic's curl examples and older SDKs do. */
function anthropicPost(path: string, body: unknown, headers: Record<string, string> = { "x-api-key": inject("keys").valid }): Promise<Response> {
  return gateway(path, { method: "POST", body: JSON.stringify(body), key: null, headers: { "anthropic-version": "2023-06-01", ...headers } });
}

async function expectAnthropicError(res: Response, status: number, type: string, code: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toContain("application/json");
  const requestId = res.headers.get("request-id");
  expect(requestId).toMatch(/^req_/);
  const body = await res.json<{ type: string; error: { type: string; message: string; details: { error_code: string } }; request_id: string }>();
  expect(body.type).toBe("error");
  expect(body.error.type).toBe(type);
  expect(body.error.details.error_code).toBe(code);
  expect(body.error.message.length).toBeGreaterThan(10);
  expect(body.request_id).toBe(requestId);
  expect(body).not.toHaveProperty("error.code");
  return body.error;
}

describe("Anthropic routes answer errors in Anthropic's shape", () => {
  it("401 authentication_error without any key, naming both headers", async () => {
    const err = await expectAnthropicError(await anthropicPost("/v1/messages", message, {}), 401, "authentication_error", "missing_api_key");
    expect(err.message).toContain("x-api-key");
  });

  it("401 authentication_error for an unknown, a revoked and an expired key in x-api-key, all alike", async () => {
    const bodies: string[] = [];
    for (const key of [`sk-sy-${"C".repeat(43)}`, inject("keys").revoked, inject("keys").expired]) {
      const res = await anthropicPost("/v1/messages", message, { "x-api-key": key });
      expect(res.status).toBe(401);
      const body = await res.json<{ error: { type: string; message: string } }>();
      expect(body.error.type).toBe("authentication_error");
      bodies.push(body.error.message);
    }
    expect(new Set(bodies).size).toBe(1);
  });

  it("accepts the key in x-api-key (the body is then checked: 400 invalid_request_error for a missing max_tokens)", async () => {
    const { max_tokens: _, ...noLimit } = message;
    const err = await expectAnthropicError(await anthropicPost("/v1/messages", noLimit), 400, "invalid_request_error", "missing_field");
    expect(err.message).toContain("max_tokens");
  });

  it("lets Authorization: Bearer win when both headers are sent", async () => {
    const { max_tokens: _, ...noLimit } = message;
    const res = await anthropicPost("/v1/messages", noLimit, { authorization: `Bearer ${inject("keys").valid}`, "x-api-key": "garbage" });
    await expectAnthropicError(res, 400, "invalid_request_error", "missing_field");
  });

  it("400 for messages that are not a list, and for a role the API does not have", async () => {
    await expectAnthropicError(await anthropicPost("/v1/messages", { ...message, messages: "hi" }), 400, "invalid_request_error", "invalid_value");
    const err = await expectAnthropicError(await anthropicPost("/v1/messages", { ...message, messages: [{ role: "tool", content: "x" }] }), 400, "invalid_request_error", "invalid_value");
    expect(err.message).toContain("messages.0.role");
  });

  it("404 not_found_error for a model that does not exist, on messages and count_tokens", async () => {
    await expectAnthropicError(await anthropicPost("/v1/messages", { ...message, model: "nope" }), 404, "not_found_error", "model_not_found");
    await expectAnthropicError(await anthropicPost("/v1/messages/count_tokens", { model: "nope", messages: message.messages }), 404, "not_found_error", "model_not_found");
  });

  it("403 permission_error for a key without the chat scope", async () => {
    await expectAnthropicError(await anthropicPost("/v1/messages", message, { "x-api-key": inject("keys").embeddingsOnly }), 403, "permission_error", "permission_denied");
  });

  it("405 for the wrong method and 404 for an unknown path under /v1/messages, in the same shape", async () => {
    await expectAnthropicError(await gateway("/v1/messages", { method: "GET" }), 405, "invalid_request_error", "method_not_allowed");
    await expectAnthropicError(await anthropicPost("/v1/messages/batches", message), 404, "not_found_error", "not_found");
  });

  it("keeps OpenAI's shape on the OpenAI routes, where x-api-key is accepted as well", async () => {
    const res = await gateway("/v1/chat/completions", { method: "POST", body: JSON.stringify({ model: "sim-llama-8b" }), key: null, headers: { "x-api-key": inject("keys").valid } });
    expect(res.status).toBe(400);
    const body = await res.json<{ error: { code: string; param: string } }>();
    expect(body.error).toMatchObject({ code: "missing_field", param: "messages" });
  });
});
