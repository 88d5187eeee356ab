import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ResponseEngines } from "../../backplane/src/proxy/stored-responses.ts";
import { NODE_HEADER } from "../../schema/contracts/signing.ts";
import { gatewayHeaders, signedPost, TEST_NODE, useBackplane, waitUntil } from "../support/backplane-harness.ts";

// Stored responses (Responses API) live in the memory of the engine that made them: the backplane
// sends calls naming one to that engine, and finds it among its engines when it does not remember.

const kit = useBackplane();
const MODEL = "sim-llama-8b";

beforeEach(() => {
  process.env.VLLM_ENABLE_RESPONSES_API_STORE = "1";
});
afterEach(() => {
  delete process.env.VLLM_ENABLE_RESPONSES_API_STORE;
});

async function signedCall(baseUrl: string, method: string, path: string): Promise<Response> {
  return fetch(baseUrl + path, { method, headers: { [NODE_HEADER]: TEST_NODE, ...(await gatewayHeaders(path, "", method)) } });
}

async function twoEngines() {
  const [a, b] = await Promise.all([kit.sim(), kit.sim()]);
  const daemon = await kit.daemon([{ id: "gpu-a", kind: "sim", url: a.url }, { id: "gpu-b", kind: "sim", url: b.url }]);
  await waitUntil(() => daemon.pool.candidates(MODEL).length === 2, 5_000, "both engines healthy");
  return { a, b, daemon };
}

describe("stored responses at the backplane", () => {
  it("sends a retrieve, a cancel and a continuation to the engine that made the response", async () => {
    const { daemon } = await twoEngines();
    // Made at the same time, least-load spreads them over both engines.
    const made = await Promise.all(
      [0, 1, 2, 3].map(async (i) => {
        const created = await signedPost(daemon.url, "/v1/responses", { model: MODEL, input: `turn ${i}`, max_output_tokens: 20, request_id: `resp_test_${i}` });
        expect(created.status).toBe(200);
        await created.arrayBuffer();
        return created.headers.get("x-switchyard-engine");
      }),
    );
    expect(new Set(made)).toEqual(new Set(["gpu-a", "gpu-b"]));
    for (const [i, madeBy] of made.entries()) {
      const got = await signedCall(daemon.url, "GET", `/v1/responses/resp_test_${i}`);
      expect(got.status).toBe(200);
      expect(got.headers.get("x-switchyard-engine")).toBe(madeBy);
      expect(((await got.json()) as { id: string }).id).toBe(`resp_test_${i}`);
      // vLLM cancels only background responses: the engine's own 400 comes back, from the same engine.
      const cancel = await signedCall(daemon.url, "POST", `/v1/responses/resp_test_${i}/cancel`);
      expect(cancel.status).toBe(400);
      expect(cancel.headers.get("x-switchyard-engine")).toBe(madeBy);
      await cancel.arrayBuffer();
      const next = await signedPost(daemon.url, "/v1/responses", { model: MODEL, input: "and then?", previous_response_id: `resp_test_${i}`, max_output_tokens: 2, request_id: `resp_next_${i}` });
      expect(next.status).toBe(200);
      expect(next.headers.get("x-switchyard-engine")).toBe(madeBy);
      await next.arrayBuffer();
    }
  });

  it("finds a response it does not remember (made before a restart) on whichever engine holds it, and answers 404 when none does", async () => {
    const { b, daemon } = await twoEngines();
    const direct = await fetch(`${b.url}/v1/responses`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: MODEL, input: "hi", max_output_tokens: 2, request_id: "resp_before_restart" }) });
    expect(direct.status).toBe(200);
    await direct.arrayBuffer();
    const got = await signedCall(daemon.url, "GET", "/v1/responses/resp_before_restart");
    expect(got.status).toBe(200);
    expect(got.headers.get("x-switchyard-engine")).toBe("gpu-b");
    await got.arrayBuffer();
    const unknown = await signedCall(daemon.url, "GET", "/v1/responses/resp_nowhere");
    expect(unknown.status).toBe(404);
    await unknown.arrayBuffer();
  });

  it("refuses unsigned calls and methods a stored response does not take", async () => {
    const { daemon } = await twoEngines();
    expect((await fetch(`${daemon.url}/v1/responses/resp_x`)).status).toBe(401);
    expect((await signedCall(daemon.url, "PUT", "/v1/responses/resp_x")).status).toBe(405);
    expect((await signedCall(daemon.url, "GET", "/v1/responses/resp_x/cancel")).status).toBe(405);
  });

  it("remembers a bounded number of ids, forgetting the oldest first", () => {
    const engines = new ResponseEngines(3);
    for (const id of ["r1", "r2", "r3", "r4"]) engines.remember(id, `e-${id}`);
    expect(engines.size).toBe(3);
    expect(engines.engineOf("r1")).toBeUndefined();
    expect(engines.engineOf("r4")).toBe("e-r4");
    engines.remember("r2", "e-again");
    engines.remember("r5", "e-r5");
    expect(engines.engineOf("r2")).toBe("e-again");
    expect(engines.engineOf("r3")).toBeUndefined();
  });
});
