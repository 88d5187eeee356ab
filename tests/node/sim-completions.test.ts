import { describe, expect, it } from "vitest";
import { useSimEngine, simClient, simPost, sseEvents } from "../support/sim-harness.ts";
import { countPromptTokens } from "../../backplane/src/sim/index.ts";

// Completions and error answers of the simulated engine, in vLLM's wire formats.

const start = useSimEngine();

const MESSAGES = [{ role: "user", content: "Tell me about trains." }];

describe("simulated vLLM: completions and errors", () => {
  it("generates 16 tokens by default on /v1/completions and streams text chunks with usage null", async () => {
    const sim = await start();
    const res = await simPost(sim, "/v1/completions", { prompt: "Once upon a time" });
    const body = (await res.json()) as Record<string, unknown> & { choices: Record<string, unknown>[]; usage: Record<string, unknown> };
    expect(body.id).toMatch(/^cmpl-[0-9a-f]{32}$/);
    expect(body.object).toBe("text_completion");
    expect(body.choices[0]).toEqual({ index: 0, text: expect.any(String) as unknown, logprobs: null, finish_reason: "length", stop_reason: null, prompt_logprobs: null });
    expect(body.usage).toEqual({ prompt_tokens: countPromptTokens("Once upon a time"), total_tokens: 5 + 16, completion_tokens: 16, prompt_tokens_details: null });

    const stream = await simPost(sim, "/v1/completions", { prompt: "Once upon a time", max_tokens: 2, stream: true, stream_options: {} });
    const events = await sseEvents(stream);
    expect(events).toHaveLength(4);
    expect(events[0]).toMatch(/"object":"text_completion",.*"choices":\[\{"index":0,"text":"[A-Z][a-z]+","logprobs":null,"finish_reason":null,"stop_reason":null\}\],"usage":null\}$/);
    expect(events[1]).toMatch(/"finish_reason":"length","stop_reason":null\}\],"usage":null\}$/);
    expect(events[2]).toMatch(/"choices":\[\],"usage":\{"prompt_tokens":5,"total_tokens":7,"completion_tokens":2\}\}$/);

    const batch = await simClient(sim).completions.create({ model: "sim-llama-8b", prompt: ["a b", "c d e"], max_tokens: 3 });
    expect(batch.choices.map((c) => c.index)).toEqual([0, 1]);
    expect(batch.usage?.prompt_tokens).toBe(3 + 4);
  });

  it("rejects a prompt beyond the context and a max_tokens that does not fit, with 400 'maximum context length'", async () => {
    const sim = await start({ models: [{ name: "small", kind: "generate", maxModelLen: 64 }] });
    const long = await simPost(sim, "/v1/chat/completions", { messages: [{ role: "user", content: "word ".repeat(100) }] });
    expect(long.status).toBe(400);
    const body = (await long.json()) as { error: { message: string; type: string; code: number } };
    expect(body.error).toMatchObject({ type: "BadRequestError", code: 400 });
    expect(body.error.message).toContain("maximum context length is 64 tokens");
    expect(body.error.message).toContain("your request has 108 input tokens");

    const big = await simPost(sim, "/v1/completions", { prompt: "hello", max_tokens: 63 });
    expect(big.status).toBe(400);
    expect(((await big.json()) as { error: { message: string } }).error.message).toBe(
      "'max_tokens' or 'max_completion_tokens' is too large: 63. This model's maximum context length is 64 tokens and your request has 2 input tokens (63 > 64 - 2).",
    );
    // Without a limit, the output is capped by what is left of the context.
    const rest = await simPost(sim, "/v1/completions", { prompt: "hello", max_tokens: null, ignore_eos: true });
    expect(((await rest.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(62);
  });

  it("answers an unknown model with vLLM's 404 NotFoundError and uses the first model when none is named", async () => {
    const sim = await start();
    const res = await simPost(sim, "/v1/chat/completions", { model: "gpt-9", messages: MESSAGES });
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ error: { message: "The model `gpt-9` does not exist.", type: "NotFoundError", param: null, code: 404 } });
    const unnamed = await simPost(sim, "/v1/chat/completions", { messages: MESSAGES, max_tokens: 1 });
    expect(((await unnamed.json()) as { model: string }).model).toBe("sim-llama-8b");
    const wrongKind = await simPost(sim, "/v1/chat/completions", { model: "sim-embed", messages: MESSAGES });
    expect(wrongKind.status).toBe(400);
    expect(((await wrongKind.json()) as { error: { message: string } }).error.message).toBe("The model does not support Chat Completions API");
  });

  it("rejects malformed bodies with 400 and ignores unknown fields", async () => {
    const sim = await start();
    const badJson = await fetch(`${sim.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: "{" });
    expect(badJson.status).toBe(400);
    expect(((await badJson.json()) as { error: { message: string } }).error.message).toContain("json_invalid");
    for (const body of [{}, { messages: "hi" }, { messages: MESSAGES, temperature: "hot" }, { messages: MESSAGES, n: 0 }]) {
      const res = await simPost(sim, "/v1/chat/completions", body);
      expect(res.status).toBe(400);
      const error = ((await res.json()) as { error: { code: number; param: null } }).error;
      expect(error).toMatchObject({ code: 400, param: null });
    }
    const missing = await simPost(sim, "/v1/chat/completions", {});
    expect(((await missing.json()) as { error: { message: string } }).error.message).toBe(
      "[{'type': 'missing', 'loc': ('body', 'messages'), 'msg': 'Field required'}]",
    );
    const extra = await simPost(sim, "/v1/chat/completions", { messages: MESSAGES, max_tokens: 1, top_k: 5, whatever: { x: 1 } });
    expect(extra.status).toBe(200);
    const textPlain = await fetch(`${sim.url}/v1/chat/completions`, { method: "POST", body: JSON.stringify({ messages: MESSAGES }) });
    expect(textPlain.status).toBe(400);
  });

  it("uses the X-Request-Id header as the response id", async () => {
    const sim = await start();
    const res = await simPost(sim, "/v1/chat/completions", { messages: MESSAGES, max_tokens: 1 }, { headers: { "x-request-id": "req-42" } });
    expect(((await res.json()) as { id: string }).id).toBe("chatcmpl-req-42");
  });
});
