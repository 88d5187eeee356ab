import OpenAI from "openai";
import { describe, expect, it } from "vitest";
import { useSimEngine, simClient, simPost, sseEvents } from "../support/sim-harness.ts";
import { countPromptTokens } from "../../backplane/src/sim/index.ts";

// Wire formats of the simulated engine: vLLM's OpenAI server, checked field by field.

const start = useSimEngine();

const MESSAGES = [{ role: "user", content: "Tell me about trains." }];
/** BOS + 4 template tokens + "Tell me about trains." (5) + 3 for the generation prompt. */
const P = 13;

describe("simulated vLLM: models and chat", () => {
  it("lists the served models in vLLM's ModelCard shape", async () => {
    const sim = await start();
    const res = await fetch(`${sim.url}/v1/models`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    const body = (await res.json()) as { object: string; data: Record<string, unknown>[] };
    expect(body.object).toBe("list");
    expect(body.data.map((m) => m.id)).toEqual(["sim-llama-8b", "sim-embed"]);
    const card = body.data[0] ?? {};
    expect(Object.keys(card)).toEqual(["id", "object", "created", "owned_by", "root", "parent", "max_model_len", "permission"]);
    expect(card).toMatchObject({ object: "model", owned_by: "vllm", root: "sim-llama-8b", parent: null, max_model_len: 8192 });
    const [permission] = card.permission as Record<string, unknown>[];
    expect(permission).toMatchObject({ object: "model_permission", allow_sampling: true, organization: "*", group: null, is_blocking: false });
    expect(permission?.id).toMatch(/^modelperm-[0-9a-f]{32}$/);
    const listed = await simClient(sim).models.list();
    expect(listed.data.map((m) => m.id)).toEqual(["sim-llama-8b", "sim-embed"]);
  });

  it("answers a non-stream chat completion with vLLM's body and exact usage", async () => {
    const sim = await start({ outputTokens: 12 });
    const completion = await simClient(sim).chat.completions.create({ model: "sim-llama-8b", messages: [{ role: "user", content: "Hello" }] });
    expect(completion.id).toMatch(/^chatcmpl-[0-9a-f]{32}$/);
    expect(completion.object).toBe("chat.completion");
    expect(Math.abs(completion.created - Date.now() / 1000)).toBeLessThan(5);
    const choice = completion.choices[0];
    expect(choice?.finish_reason).toBe("stop");
    expect(choice?.message.role).toBe("assistant");
    // 12 generated tokens: 11 words, then EOS (which counts but renders as nothing).
    expect(choice?.message.content?.split(" ")).toHaveLength(11);
    expect(completion.usage).toEqual({
      prompt_tokens: countPromptTokens([{ role: "user", content: "Hello" }]),
      completion_tokens: 12,
      total_tokens: countPromptTokens([{ role: "user", content: "Hello" }]) + 12,
      prompt_tokens_details: null,
    });

    const raw = await simPost(sim, "/v1/chat/completions", { messages: MESSAGES, max_tokens: 4 });
    expect(raw.status).toBe(200);
    const body = (await raw.json()) as Record<string, unknown>;
    // model_dump() of vLLM 0.11: every field, nulls included.
    expect(Object.keys(body)).toEqual([
      "id", "object", "created", "model", "choices", "service_tier", "system_fingerprint", "usage", "prompt_logprobs", "prompt_token_ids", "kv_transfer_params",
    ]);
    expect(body).toMatchObject({ service_tier: null, system_fingerprint: null, prompt_logprobs: null, prompt_token_ids: null, kv_transfer_params: null });
    expect(body.model).toBe("sim-llama-8b");
    expect(body.choices).toEqual([
      {
        index: 0,
        message: {
          role: "assistant", content: expect.any(String) as unknown, refusal: null, annotations: null, audio: null, function_call: null, tool_calls: [], reasoning_content: null,
        },
        logprobs: null,
        finish_reason: "length",
        stop_reason: null,
        token_ids: null,
      },
    ]);
    expect(P).toBe(countPromptTokens(MESSAGES));
    expect(body.usage).toEqual({ prompt_tokens: P, total_tokens: P + 4, completion_tokens: 4, prompt_tokens_details: null });
  });

  it("streams role chunk, one chunk per token, finish chunk and [DONE], without usage unless asked", async () => {
    const sim = await start();
    const res = await simPost(sim, "/v1/chat/completions", { messages: MESSAGES, max_tokens: 3, stream: true });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    const events = await sseEvents(res);
    expect(events.at(-1)).toBe("[DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as { id: string; choices: unknown[] });
    expect(chunks).toHaveLength(4);
    const id = chunks[0]?.id ?? "";
    expect(id).toMatch(/^chatcmpl-[0-9a-f]{32}$/);
    const head = `{"id":"${id}","object":"chat.completion.chunk","created":`;
    expect(events[0]).toMatch(
      new RegExp(`^${escape(head)}\\d+,"model":"sim-llama-8b","choices":\\[\\{"index":0,"delta":\\{"role":"assistant","content":""\\},"logprobs":null,"finish_reason":null\\}\\],"prompt_token_ids":null\\}$`),
    );
    expect(events[1]).toMatch(/"choices":\[\{"index":0,"delta":\{"content":"[A-Z][a-z]+"\},"logprobs":null,"finish_reason":null,"token_ids":null\}\]\}$/);
    expect(events[2]).toMatch(/"choices":\[\{"index":0,"delta":\{"content":" [a-z]+"\},"logprobs":null,"finish_reason":null,"token_ids":null\}\]\}$/);
    // The last token rides on the finish chunk, as in vLLM.
    expect(events[3]).toMatch(/"choices":\[\{"index":0,"delta":\{"content":" [a-z]+"\},"logprobs":null,"finish_reason":"length","stop_reason":null,"token_ids":null\}\]\}$/);
    expect(events.join("")).not.toContain("usage");
  });

  it("sends the usage chunk when stream_options is {} (include_usage defaults to true)", async () => {
    const sim = await start({ outputTokens: 5 });
    const res = await simPost(sim, "/v1/chat/completions", { messages: MESSAGES, stream: true, stream_options: {} });
    const events = await sseEvents(res);
    expect(events).toHaveLength(1 + 5 + 1 + 1);
    const finish = JSON.parse(events[5] ?? "") as { choices: { delta: unknown; finish_reason: string; stop_reason: null }[] };
    // Natural end: EOS is the fifth token, an empty delta with finish_reason "stop".
    expect(finish.choices[0]).toEqual({ index: 0, delta: { content: "" }, logprobs: null, finish_reason: "stop", stop_reason: null, token_ids: null });
    expect(events[6]).toMatch(new RegExp(`"choices":\\[\\],"usage":\\{"prompt_tokens":${P},"total_tokens":${P + 5},"completion_tokens":5\\}\\}$`));
    expect(events[7]).toBe("[DONE]");

    const off = await simPost(sim, "/v1/chat/completions", { messages: MESSAGES, stream: true, stream_options: { include_usage: false } });
    expect((await sseEvents(off)).join("")).not.toContain("usage");
  });

  it("adds running usage to every chunk with continuous_usage_stats", async () => {
    const sim = await start();
    const res = await simPost(sim, "/v1/chat/completions", {
      messages: MESSAGES,
      max_tokens: 3,
      stream: true,
      stream_options: { include_usage: true, continuous_usage_stats: true },
    });
    const chunks = (await sseEvents(res)).slice(0, -1).map((e) => JSON.parse(e) as { usage: { completion_tokens: number } });
    expect(chunks.map((c) => c.usage.completion_tokens)).toEqual([0, 1, 2, 3, 3]);
    expect(chunks[1]?.usage).toEqual({ prompt_tokens: P, total_tokens: P + 1, completion_tokens: 1 });
  });

  it("rejects stream_options without stream:true with a 400", async () => {
    const sim = await start();
    const res = await simPost(sim, "/v1/chat/completions", { messages: MESSAGES, stream_options: { include_usage: true } });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { message: string; type: string; param: null; code: number } };
    expect(body.error.code).toBe(400);
    expect(body.error.type).toBe("Bad Request");
    expect(body.error.message).toContain("Stream options can only be defined when `stream=True`.");
    expect(Object.keys(body.error)).toEqual(["message", "type", "param", "code"]);
  });

  it("streams n choices told apart by index, through the openai client too", async () => {
    const sim = await start();
    const res = await simPost(sim, "/v1/chat/completions", { messages: MESSAGES, n: 2, max_tokens: 4, stream: true });
    const chunks = (await sseEvents(res)).slice(0, -1).map((e) => JSON.parse(e) as { choices: { index: number; delta: { content: string } }[] });
    expect(chunks).toHaveLength(2 + 2 * 4);
    expect(chunks.slice(0, 2).map((c) => c.choices[0]?.index)).toEqual([0, 1]);
    const text = (i: number) => chunks.slice(2).filter((c) => c.choices[0]?.index === i).map((c) => c.choices[0]?.delta.content).join("");
    expect(text(0)).not.toBe(text(1));

    const stream = await simClient(sim).chat.completions.create({
      model: "sim-llama-8b",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 6,
      stream: true,
      stream_options: { include_usage: true },
    });
    let content = "";
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      content += chunk.choices[0]?.delta.content ?? "";
      usage = chunk.usage ?? usage;
    }
    expect(content.split(" ")).toHaveLength(6);
    expect(usage?.completion_tokens).toBe(6);
  });

  it("is deterministic per prompt and seed", async () => {
    const sim = await start();
    const ask = async (body: Record<string, unknown>) => {
      const res = await simPost(sim, "/v1/chat/completions", { messages: MESSAGES, max_tokens: 20, ...body });
      return ((await res.json()) as { choices: { message: { content: string } }[] }).choices[0]?.message.content;
    };
    expect(await ask({ seed: 7 })).toBe(await ask({ seed: 7 }));
    expect(await ask({ seed: 7 })).not.toBe(await ask({ seed: 8 }));
    expect(await ask({})).toBe(await ask({ seed: 0 }));
    expect(await ask({ messages: [{ role: "user", content: "Something else" }] })).not.toBe(await ask({}));
    // Streamed text is the same text.
    const res = await simPost(sim, "/v1/chat/completions", { messages: MESSAGES, max_tokens: 20, seed: 7, stream: true });
    const streamed = (await sseEvents(res))
      .slice(1, -1)
      .map((e) => (JSON.parse(e) as { choices: { delta: { content: string } }[] }).choices[0]?.delta.content)
      .join("");
    expect(streamed).toBe(await ask({ seed: 7 }));
  });

  it("stops at max_tokens with finish_reason length, max_completion_tokens winning over max_tokens", async () => {
    const sim = await start();
    const res = await simPost(sim, "/v1/chat/completions", { messages: MESSAGES, max_tokens: 9, max_completion_tokens: 7 });
    const body = (await res.json()) as { choices: { finish_reason: string }[]; usage: { completion_tokens: number } };
    expect(body.choices[0]?.finish_reason).toBe("length");
    expect(body.usage.completion_tokens).toBe(7);
  });

  it("ends at a stop string with stop_reason set and the string removed", async () => {
    const sim = await start();
    const first = await simPost(sim, "/v1/chat/completions", { messages: MESSAGES, max_tokens: 10 });
    const text = ((await first.json()) as { choices: { message: { content: string } }[] }).choices[0]?.message.content ?? "";
    const third = text.split(" ")[2] ?? "";
    const res = await simPost(sim, "/v1/chat/completions", { messages: MESSAGES, max_tokens: 10, stop: [` ${third}`] });
    const body = (await res.json()) as { choices: { message: { content: string }; finish_reason: string; stop_reason: string }[] };
    expect(body.choices[0]).toMatchObject({ finish_reason: "stop", stop_reason: ` ${third}` });
    expect(body.choices[0]?.message.content).toBe(text.slice(0, text.indexOf(` ${third}`)));
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
