import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { inject } from "vitest";
import { newResponseId } from "../../worker/src/responses/ids.ts";
import { gateway, post } from "./helpers.ts";

// Stored responses live on the node that made them (docs/api.md, "Responses"): calls naming one
// go to that node, and an id is usable only by the organisation it was made for.

async function errorOf(res: Response) {
  return { status: res.status, body: await res.json<{ error: { code: string; message: string; param: string | null } }>() };
}

describe("calls on a stored response", () => {
  it("answer 404, the same as for an unknown id, when the id was made for another organisation or is forged", async () => {
    const theirs = await newResponseId(env.NODE_SIGNING_SECRET, inject("otherTenantId"), inject("liveNodeId"));
    const unknown = await errorOf(await gateway(`/v1/responses/${theirs}`));
    expect(unknown).toMatchObject({ status: 404, body: { error: { code: "not_found", param: "response_id" } } });
    const forgedId = `resp_${btoa(inject("liveNodeId")).replace(/=+$/, "")}.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA`;
    for (const id of [forgedId, "resp_not-ours", "abc=="]) {
      const forged = await errorOf(await gateway(`/v1/responses/${id}`));
      expect(forged).toMatchObject({ status: 404, body: { error: { code: "not_found" } } });
      expect(forged.body.error.message).toBe(unknown.body.error.message.replace(theirs, id));
    }
    // Continuing it is refused the same way, before any GPU work or budget reservation.
    const continued = await errorOf(await post("/v1/responses", { model: "sim-llama-8b", input: "go on", previous_response_id: theirs }));
    expect(continued).toMatchObject({ status: 404, body: { error: { code: "not_found" } } });
  });

  it("answer 410 naming the node when the node that stores it is gone", async () => {
    const id = await newResponseId(env.NODE_SIGNING_SECRET, inject("tenantId"), "node-that-left");
    for (const res of [await gateway(`/v1/responses/${id}`), await post("/v1/responses", { model: "sim-llama-8b", input: "go on", previous_response_id: id })]) {
      const { status, body } = await errorOf(res);
      expect(status).toBe(410);
      expect(body.error.code).toBe("response_gone");
      expect(body.error.message).toContain("'node-that-left'");
      expect(body.error.message).toContain("start a new response");
    }
  });

  it("go to the node that stores it and relay its 404 for a response it does not hold", async () => {
    const id = await newResponseId(env.NODE_SIGNING_SECRET, inject("tenantId"), inject("liveNodeId"));
    for (const [method, path] of [["GET", `/v1/responses/${id}?include[]=message.output_text.logprobs`], ["POST", `/v1/responses/${id}/cancel`]] as const) {
      const { status, body } = await errorOf(await gateway(path, { method }));
      expect({ method, path, status }).toEqual({ method, path, status: 404 });
      expect(body.error.code).toBe("not_found");
    }
    // vLLM has no delete and no input_items route: the engine's 405 or 404 is told as such.
    const deleted = await errorOf(await gateway(`/v1/responses/${id}`, { method: "DELETE" }));
    expect([404, 405]).toContain(deleted.status);
  });

  it("refuse a background response (its usage would never pass the gateway) and check max_output_tokens", async () => {
    const background = await errorOf(await post("/v1/responses", { model: "sim-llama-8b", input: "hi", background: true }));
    expect(background).toMatchObject({ status: 400, body: { error: { code: "invalid_value", param: "background" } } });
    const limit = await errorOf(await post("/v1/responses", { model: "sim-llama-8b", input: "hi", max_output_tokens: 0 }));
    expect(limit).toMatchObject({ status: 400, body: { error: { param: "max_output_tokens" } } });
    const missing = await errorOf(await post("/v1/responses", { model: "sim-llama-8b" }));
    expect(missing).toMatchObject({ status: 400, body: { error: { code: "missing_field", param: "input" } } });
  });
});
