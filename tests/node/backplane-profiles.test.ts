import { describe, expect, it } from "vitest";
import { NODE_HEADER } from "../../schema/contracts/signing.ts";
import { PROFILE_FIELD, type ProfileWire } from "../../schema/contracts/stream-profile.ts";
import { gatewayHeaders, TEST_NODE, useBackplane } from "../support/backplane-harness.ts";

const bp = useBackplane();
const PATH = "/v1/chat/completions";

function profile(over: Partial<ProfileWire> = {}): ProfileWire {
  return { name: "test", chunk_tokens: 4, interval_ms: 0, buffer_tokens: 40, timeout_ms: 30_000, prompt_tokens_estimate: 50, ...over };
}

async function gatewayPost(baseUrl: string, body: unknown): Promise<Response> {
  const raw = JSON.stringify(body);
  const headers = { "content-type": "application/json", [NODE_HEADER]: TEST_NODE, ...(await gatewayHeaders(PATH, raw)) };
  return fetch(baseUrl + PATH, { method: "POST", headers, body: raw });
}

/** The blocks of an SSE body. */
const blocks = (text: string) => text.split("\n\n").filter((b) => b !== "");
const dataOf = (block: string) => block.split("\n").find((l) => l.startsWith("data: "))?.slice(6) ?? "";

describe("profiled streams on the backplane", () => {
  it("re-chunks the engine's stream, marking each event's tokens, and keeps the profile field from the engine", async () => {
    const sim = await bp.sim();
    const daemon = await bp.daemon([{ kind: "sim", url: sim.url }]);
    const body = { model: "sim-llama-8b", stream: true, stream_options: { include_usage: true }, max_tokens: 10, ignore_eos: true, messages: [{ role: "user", content: "hi" }] };
    const res = await gatewayPost(daemon.url, { ...body, [PROFILE_FIELD]: profile() });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-switchyard-profile")).toBe("test");
    const out = blocks(await res.text());
    expect(out.filter((b) => b.startsWith(": tokens=")).map((b) => b.split("\n")[0])).toEqual([": tokens=0", ": tokens=4", ": tokens=4", ": tokens=2"]);
    // The engine saw the running-usage request without the profile: its final usage chunk is its own.
    const usage = JSON.parse(dataOf(out.at(-2) ?? "")) as { usage: { completion_tokens: number } };
    expect(usage.usage.completion_tokens).toBe(10);
    expect(out.at(-1)).toBe("data: [DONE]");
    // The content chunks carry no running usage: the client did not ask for it.
    expect(out.filter((b) => b.startsWith(": tokens=")).every((b) => !dataOf(b).includes('"usage"'))).toBe(true);
  });

  it("ends in band with zero usage when the profile's time runs out before the engine's first token", async () => {
    const sim = await bp.sim({ ttftMs: 3000 });
    const daemon = await bp.daemon([{ kind: "sim", url: sim.url }]);
    const started = Date.now();
    const res = await gatewayPost(daemon.url, { model: "sim-llama-8b", stream: true, max_tokens: 5, messages: [{ role: "user", content: "hi" }], [PROFILE_FIELD]: profile({ timeout_ms: 1000 }) });
    expect(res.status).toBe(200);
    const out = blocks(await res.text()).map(dataOf);
    expect(Date.now() - started).toBeLessThan(2500);
    expect(JSON.parse(out[0] ?? "")).toMatchObject({ choices: [], usage: { prompt_tokens: 0, completion_tokens: 0 } });
    expect(JSON.parse(out[1] ?? "")).toMatchObject({ error: { code: "stream_timeout" } });
    expect(out[2]).toBe("[DONE]");
    // The engine's request was abandoned.
    await new Promise((r) => setTimeout(r, 300));
    const metrics = await (await fetch(`${sim.url}/metrics`)).text();
    expect(metrics).toMatch(/vllm:num_requests_running\{[^}]*\} 0(\.0)?\n/);
  });
});
