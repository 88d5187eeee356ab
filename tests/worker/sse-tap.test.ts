import { describe, expect, it } from "vitest";
import { tapSse } from "../../worker/src/proxy/sse-tap.ts";
import { tapJson, usageFromTail } from "../../worker/src/proxy/json-tap.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function sourceOf(parts: string[], opts: { failAtEnd?: boolean } = {}): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const part = parts[i++];
      if (part !== undefined) controller.enqueue(enc.encode(part));
      else if (opts.failAtEnd) controller.error(new Error("connection reset"));
      else controller.close();
    },
  });
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<string[]> {
  const out: string[] = [];
  const reader = stream.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return out;
    out.push(dec.decode(value));
  }
}

const role = 'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n';
const token = (t: string) => `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"${t}"}}]}\n\n`;
const usage = 'data: {"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9,"prompt_tokens_details":{"cached_tokens":3}}}\n\n';
const done = "data: [DONE]\n\n";

describe("SSE usage tap", () => {
  it("passes every event through unchanged and in the same pieces when the client asked for usage", async () => {
    const parts = [role, token("a"), token("b"), usage, done];
    const tapped = tapSse(sourceOf(parts), { stripUsage: false });
    expect(await readAll(tapped.body)).toEqual(parts);
    const outcome = await tapped.done;
    expect(outcome).toMatchObject({ status: "ok", usage: { promptTokens: 7, completionTokens: 2, cachedPromptTokens: 3 }, deliveredChunks: 3 });
  });

  it("removes only the usage-only chunk when the client did not ask for it", async () => {
    const tapped = tapSse(sourceOf([role, token("a"), usage + done]), { stripUsage: true });
    expect((await readAll(tapped.body)).join("")).toBe(role + token("a") + done);
    expect((await tapped.done).usage?.completionTokens).toBe(2);
  });

  it("reassembles events split across network chunks before forwarding them", async () => {
    const whole = role + token("héllo");
    const cut = whole.length - 20;
    const tapped = tapSse(sourceOf([whole.slice(0, cut), whole.slice(cut), done]), { stripUsage: true });
    const out = await readAll(tapped.body);
    expect(out.join("")).toBe(whole + done);
    expect(out.every((piece) => piece.endsWith("\n\n"))).toBe(true);
  });

  it("ends a stream cut without [DONE] with an in-band error and [DONE]", async () => {
    const tapped = tapSse(sourceOf([role, token("a")]), { stripUsage: true });
    const text = (await readAll(tapped.body)).join("");
    expect(text.startsWith(role + token("a"))).toBe(true);
    expect(text).toMatch(/data: \{"error":\{"message":"[^"]+","type":"api_error","param":null,"code":"upstream_error"\}\}\n\ndata: \[DONE\]\n\n$/);
    expect((await tapped.done).status).toBe("error");
  });

  it("ends a failing upstream with an in-band error and [DONE] instead of an aborted body", async () => {
    const tapped = tapSse(sourceOf([role, token("a")], { failAtEnd: true }), { stripUsage: true });
    const text = (await readAll(tapped.body)).join("");
    expect(text.endsWith("data: [DONE]\n\n")).toBe(true);
    expect(text).toContain('"error"');
    const outcome = await tapped.done;
    expect(outcome).toMatchObject({ status: "error", deliveredChunks: 2 });
  });

  it("adds only [DONE] after an engine's own in-band error", async () => {
    const engineError = 'data: {"error":{"message":"boom","type":"InternalServerError","param":null,"code":500}}\n\n';
    const tapped = tapSse(sourceOf([role, engineError]), { stripUsage: true });
    expect((await readAll(tapped.body)).join("")).toBe(role + engineError + done);
    expect((await tapped.done).status).toBe("error");
  });

  it("cancels the upstream and reports a cancelled outcome when the client goes away", async () => {
    let cancelled = false;
    const source = new ReadableStream<Uint8Array>({
      pull(controller) {
        controller.enqueue(enc.encode(token("x")));
      },
      cancel() {
        cancelled = true;
      },
    });
    const tapped = tapSse(source, { stripUsage: true });
    const reader = tapped.body.getReader();
    await reader.read();
    await reader.cancel();
    const outcome = await tapped.done;
    expect(outcome.status).toBe("cancelled");
    expect(cancelled).toBe(true);
  });
});

describe("JSON usage tap", () => {
  it("passes the body through and reads usage from its tail", async () => {
    const body = '{"id":"x","choices":[{"message":{"content":"a \\"usage\\": {} b"}}],"usage":{"prompt_tokens":12,"total_tokens":40,"completion_tokens":28,"prompt_tokens_details":null}}';
    const tapped = tapJson(sourceOf([body.slice(0, 30), body.slice(30)]));
    expect((await readAll(tapped.body)).join("")).toBe(body);
    expect((await tapped.done).usage).toEqual({ promptTokens: 12, completionTokens: 28, cachedPromptTokens: 0 });
  });

  it("reads nested usage details", () => {
    expect(usageFromTail('"usage":{"prompt_tokens":5,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":4}}}')).toEqual({
      promptTokens: 5,
      completionTokens: 1,
      cachedPromptTokens: 4,
    });
  });
});
