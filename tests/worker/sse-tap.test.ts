import { describe, expect, it } from "vitest";
import { tapSse } from "../../worker/src/proxy/sse-tap.ts";
import { readJson, usageFromTail } from "../../worker/src/proxy/json-tap.ts";
import { sourceOf } from "./sse-streams.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

async function readBytes(stream: ReadableStream<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  const reader = stream.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return out;
    out.push(value);
  }
}

function joined(pieces: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(pieces.reduce((sum, piece) => sum + piece.length, 0));
  let at = 0;
  for (const piece of pieces) {
    out.set(piece, at);
    at += piece.length;
  }
  return out;
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
  it("meters a cut stream for its content only: each choice's opening chunk (role, no content) is not a token", async () => {
    const second = role.replace('"index":0', '"index":1');
    const tapped = tapSse(sourceOf([role, second, token("a"), token("b"), token("c")], { failAtEnd: true }), { stripUsage: true });
    await readAll(tapped.body);
    expect(await tapped.done).toMatchObject({ status: "error", usage: null, deliveredChunks: 3 });
  });

  it("passes every event through unchanged and in the same pieces when the client asked for usage", async () => {
    const parts = [role, token("a"), token("b"), usage, done];
    const tapped = tapSse(sourceOf(parts), { stripUsage: false });
    expect(await readAll(tapped.body)).toEqual(parts);
    const outcome = await tapped.done;
    expect(outcome).toMatchObject({ status: "ok", usage: { promptTokens: 7, completionTokens: 2, cachedPromptTokens: 3 }, deliveredChunks: 2 });
  });

  it("removes only the usage-only chunk when the client did not ask for it", async () => {
    const tapped = tapSse(sourceOf([role, token("a"), usage + done]), { stripUsage: true });
    expect((await readAll(tapped.body)).join("")).toBe(role + token("a") + done);
    expect((await tapped.done).usage?.completionTokens).toBe(2);
  });

  it("forwards a content event split across network chunks as its pieces arrive, even when removing usage", async () => {
    const whole = role + token("héllo");
    const cut = whole.length - 20;
    const tapped = tapSse(sourceOf([whole.slice(0, cut), whole.slice(cut), done]), { stripUsage: true });
    expect(await readAll(tapped.body)).toEqual([whole.slice(0, cut), whole.slice(cut), done]);
    expect((await tapped.done).deliveredChunks).toBe(1);
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
    expect(outcome).toMatchObject({ status: "error", deliveredChunks: 1 });
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

/** The same events with another line end. */
const framed = (text: string, eol: string) => text.replaceAll("\n", eol);
const usageMetered = { promptTokens: 7, completionTokens: 2, cachedPromptTokens: 3 };

/** Runs a stream, given as byte pieces, through the tap: what the client got and what was metered. */
async function run(parts: Uint8Array[], stripUsage: boolean) {
  const tapped = tapSse(sourceOf(parts), { stripUsage });
  const out = await readBytes(tapped.body);
  const bytes = joined(out);
  return { pieces: out, bytes, text: dec.decode(bytes), outcome: await tapped.done };
}

describe("SSE framing in the usage tap", () => {
  it("meters a CRLF stream and removes exactly its usage chunk, as it arrives", async () => {
    const parts = [role, token("a"), token("b"), usage, done].map((part) => framed(part, "\r\n"));
    const tapped = tapSse(sourceOf(parts), { stripUsage: true });
    expect(await readAll(tapped.body)).toEqual([parts[0], parts[1], parts[2], parts[4]]);
    expect(await tapped.done).toMatchObject({ status: "ok", usage: usageMetered, deliveredChunks: 2, errorCode: null });
  });

  it("meters a CR-only stream and removes exactly its usage chunk", async () => {
    const text = framed(role + token("a") + usage + done, "\r");
    const { text: got, outcome } = await run([enc.encode(text)], true);
    expect(got).toBe(framed(role + token("a") + done, "\r"));
    expect(outcome).toMatchObject({ status: "ok", usage: usageMetered, deliveredChunks: 1 });
  });

  it("removes the LF of a CRLF that arrives in the next chunk after the removed usage chunk", async () => {
    const usageCrlf = framed(usage, "\r\n");
    const parts = [framed(token("a"), "\r\n").slice(0, -1), "\n" + usageCrlf.slice(0, -1), "\n" + framed(done, "\r\n")];
    const { text, outcome } = await run(parts.map((part) => enc.encode(part)), true);
    expect(text).toBe(framed(token("a") + done, "\r\n"));
    expect(outcome).toMatchObject({ status: "ok", usage: usageMetered, deliveredChunks: 1 });
  });

  it("ignores comments and event, id and retry lines, and removes the usage block with its own lines", async () => {
    const keepAlive = ": keep-alive\n\n";
    const tagged = `event: message\nid: 41\nretry: 3000\n${token("a")}`;
    const usageBlock = `: usage follows\nid: 42\n${usage}`;
    const { text, outcome } = await run([enc.encode(keepAlive + role + tagged + keepAlive), enc.encode(usageBlock + done)], true);
    expect(text).toBe(keepAlive + role + tagged + keepAlive + done);
    expect(outcome).toMatchObject({ status: "ok", usage: usageMetered, deliveredChunks: 1 });
  });

  it("joins multi-line data with LF to read usage split over several data lines", async () => {
    const multiLine =
      'data: {"id":"c","object":"chat.completion.chunk","choices":[],\ndata: "usage":{"prompt_tokens":7,"completion_tokens":2,\ndata:"prompt_tokens_details":{"cached_tokens":3}}}\n\n';
    const { text, outcome } = await run([enc.encode(token("a") + multiLine + done)], true);
    expect(text).toBe(token("a") + done);
    expect(outcome).toMatchObject({ status: "ok", usage: usageMetered, deliveredChunks: 1 });
  });

  it("reads a stream with a leading BOM, no space after the colon and a field without a colon", async () => {
    const stream = '\uFEFFdata:{"choices":[{"delta":{"content":"a"}}]}\nignored\n\n' + usage.replace("data: ", "data:") + "data:[DONE]\n\n";
    const { bytes, outcome } = await run([enc.encode(stream)], false);
    expect(bytes).toEqual(enc.encode(stream));
    expect(outcome).toMatchObject({ status: "ok", usage: usageMetered, deliveredChunks: 1 });
  });

  // Every framing in one stream, with multibyte characters (2, 3 and 4 bytes) to cut through.
  const sample =
    "\uFEFF: hi\r\n\r\n" +
    framed(role, "\r\n") +
    "event: message\rid: 1\r" +
    token("é€😀").replace("\n\n", "\r\r") +
    token("b") +
    framed(usage, "\r\n") +
    "data: [DONE]\r\n\r\n";
  const sampleBytes = enc.encode(sample);
  const sampleWithout = sample.replace(framed(usage, "\r\n"), "");

  for (const stripUsage of [true, false]) {
    it(`gives the same bytes and usage at every split point of a mixed-framing stream (stripUsage: ${stripUsage})`, async () => {
      const expected = stripUsage ? sampleWithout : sample;
      const results = [await run(Array.from(sampleBytes, (byte) => Uint8Array.of(byte)), stripUsage)];
      for (let cut = 1; cut < sampleBytes.length; cut++) results.push(await run([sampleBytes.slice(0, cut), sampleBytes.slice(cut)], stripUsage));
      for (const { bytes, outcome } of results) {
        expect(bytes).toEqual(enc.encode(expected)); // bytes: a decoder would drop the BOM
        expect(outcome).toMatchObject({ status: "ok", usage: usageMetered, deliveredChunks: 2, errorCode: null });
      }
    });
  }

  it("passes an oversized line on chunk by chunk without holding it, and still meters the stream", async () => {
    const megabyte = 'data: {"choices":[],"x":"' + "x".repeat(1024 * 1024) + '"}\n\n';
    const bytes = enc.encode(megabyte);
    const parts: Uint8Array[] = [enc.encode(role)];
    for (let at = 0; at < bytes.length; at += 64 * 1024) parts.push(bytes.slice(at, at + 64 * 1024));
    parts.push(enc.encode(usage + done));
    const { pieces, text, outcome } = await run(parts, true);
    // Every piece of the huge event goes out as it was read (none waits for the line to end).
    expect(pieces.length).toBe(parts.length);
    expect(pieces.slice(0, -1).map((piece) => piece.length)).toEqual(parts.slice(0, -1).map((part) => part.length));
    expect(text).toBe(role + megabyte + done);
    expect(outcome).toMatchObject({ status: "ok", usage: usageMetered, deliveredChunks: 1 });
  });

  it("closes an event cut mid-line before appending the in-band error", async () => {
    const { text, outcome } = await run([enc.encode(role + token("a").slice(0, 30))], true);
    expect(text.startsWith(role + token("a").slice(0, 30) + "\n\ndata: {\"error\":")).toBe(true);
    expect(text.endsWith("data: [DONE]\n\n")).toBe(true);
    expect(outcome).toMatchObject({ status: "error", errorCode: "upstream_stream_error" });
  });
});

describe("JSON usage tap", () => {
  it("reads the body whole, unchanged, and its usage from its tail", async () => {
    const body = '{"id":"x","choices":[{"message":{"content":"a \\"usage\\": {} b"}}],"usage":{"prompt_tokens":12,"total_tokens":40,"completion_tokens":28,"prompt_tokens_details":null}}';
    const read = await readJson(new Response(sourceOf([body.slice(0, 30), body.slice(30)])), 1234);
    expect(new TextDecoder().decode(read.bytes ?? new Uint8Array())).toBe(body);
    expect(read.outcome).toMatchObject({ status: "ok", firstByteAt: 1234, usage: { promptTokens: 12, completionTokens: 28, cachedPromptTokens: 0 } });
  });

  it("answers a body that breaks off as an error, with no bytes to send on", async () => {
    const broken = new ReadableStream<Uint8Array>({
      pull(controller) {
        controller.enqueue(new TextEncoder().encode('{"id":"x","choi'));
        controller.error(new Error("connection reset"));
      },
    });
    const read = await readJson(new Response(broken), 1);
    expect(read.bytes).toBeNull();
    expect(read.outcome).toMatchObject({ status: "error", usage: null, errorCode: "upstream_stream_error" });
  });

  it("reads nested usage details", () => {
    expect(usageFromTail('"usage":{"prompt_tokens":5,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":4}}}')).toEqual({
      promptTokens: 5,
      completionTokens: 1,
      cachedPromptTokens: 4,
    });
  });
});
