import { describe, expect, it } from "vitest";
import { admin, type ErrorBody } from "./admin-helpers.ts";
import { gateway, post } from "./helpers.ts";

describe("answers that tell the caller what to do", () => {
  it("answers 405 naming the allowed method when a POST route is called with GET, before any key check", async () => {
    for (const path of ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]) {
      const res = await gateway(path, { method: "GET", key: null });
      expect(res.status).toBe(405);
      expect(res.headers.get("allow")).toBe("POST");
      const body = await res.json<ErrorBody>();
      expect(body.error).toMatchObject({ code: "method_not_allowed", type: "invalid_request_error" });
      expect(body.error.message).toContain("use POST");
    }
    const models = await gateway("/v1/models", { method: "POST", body: "{}" });
    expect(models.status).toBe(405);
    expect(models.headers.get("allow")).toBe("GET");
  });

  it("answers 413 to a body over 10 MB, whether or not it declared its length", async () => {
    const big = JSON.stringify({ model: "sim-llama-8b", messages: [{ role: "user", content: "x".repeat(10 * 1024 * 1024) }] });
    const declared = await post("/v1/chat/completions", JSON.parse(big));
    expect(declared.status).toBe(413);
    // A chunked body (no content-length) is measured as it is read.
    const bytes = new TextEncoder().encode(big);
    const chunked = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 1 << 20) controller.enqueue(bytes.subarray(i, i + (1 << 20)));
        controller.close();
      },
    });
    const res = await gateway("/v1/chat/completions", { method: "POST", body: chunked, headers: { "content-type": "application/json" } });
    expect(res.status).toBe(413);
    const body = await res.json<ErrorBody>();
    expect(body.error).toMatchObject({ code: "request_too_large" });
    expect(body.error.message).toContain("10 MB");
  });

  it("says that no node serves a catalogue model, without asking to retry", async () => {
    const id = `unserved-${crypto.randomUUID().slice(0, 8)}`;
    const created = await admin("PUT", `/models/${id}`, { family: "llama", context_length: 8192, input_price_per_m_tokens: 0.1, output_price_per_m_tokens: 0.2 });
    expect(created.status).toBe(201);
    await new Promise((r) => setTimeout(r, 1_100)); // ROUTING_CACHE_ISOLATE_SECONDS=1 in the test bindings
    const res = await post("/v1/chat/completions", { model: id, messages: [{ role: "user", content: "hi" }], max_tokens: 1 });
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBeNull();
    const body = await res.json<ErrorBody>();
    expect(body.error.code).toBe("no_capacity");
    expect(body.error.message).toContain(`No GPU node serves '${id}'`);
    expect(body.error.message).not.toMatch(/retry/i);
  });
});
