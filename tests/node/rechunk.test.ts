import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Rechunker, type RechunkEnd } from "../../backplane/src/proxy/rechunk.ts";
import { UsageTap } from "../../schema/contracts/usage-tap.ts";
import type { ProfileWire } from "../../schema/contracts/stream-profile.ts";

const encoder = new TextEncoder();
const HEAD = { id: "chatcmpl-abc", object: "chat.completion.chunk", created: 1700000000, model: "m" };

function profile(over: Partial<ProfileWire> = {}): ProfileWire {
  return { name: "test", chunk_tokens: 5, interval_ms: 0, buffer_tokens: 1000, timeout_ms: 30_000, prompt_tokens_estimate: 99, ...over };
}

/** An engine's chat stream as vLLM writes it with continuous usage: role chunk, one token per delta, finish on the last, usage chunk, [DONE]. */
function engineChat(words: string[], opts: { prompt?: number; usageEach?: boolean; finish?: string } = {}): string[] {
  const prompt = opts.prompt ?? 7;
  const usage = (n: number) => (opts.usageEach === false ? {} : { usage: { prompt_tokens: prompt, total_tokens: prompt + n, completion_tokens: n } });
  const events = [{ ...HEAD, choices: [{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }], ...usage(0) }];
  words.forEach((w, i) => {
    const last = i === words.length - 1;
    events.push({
      ...HEAD,
      choices: [{ index: 0, delta: { content: w }, logprobs: null, finish_reason: last ? (opts.finish ?? "stop") : null, ...(last ? { stop_reason: null } : {}) }],
      ...usage(i + 1),
    } as never);
  });
  const out = events.map((e) => `data: ${JSON.stringify(e)}\n\n`);
  out.push(`data: ${JSON.stringify({ ...HEAD, choices: [], usage: { prompt_tokens: prompt, total_tokens: prompt + words.length, completion_tokens: words.length } })}\n\n`);
  out.push("data: [DONE]\n\n");
  return out;
}

/** A fake gateway socket: what was written, and whether it takes more. */
function sink(opts: { full?: boolean } = {}) {
  const writes: { at: number; text: string }[] = [];
  let drain: (() => void) | null = null;
  const state = { full: opts.full === true, ended: false };
  return {
    writes,
    state,
    out: {
      write: (text: string) => {
        writes.push({ at: Date.now(), text });
        return !state.full;
      },
      end: () => {
        state.ended = true;
      },
      onDrain: (cb: () => void) => {
        drain = cb;
      },
    },
    drain() {
      state.full = false;
      const cb = drain;
      drain = null;
      cb?.();
    },
    /** The data payloads written, parsed (`[DONE]` as the string). */
    events(): unknown[] {
      return writes
        .map((w) => w.text)
        .join("")
        .split("\n\n")
        .filter((b) => b.length > 0)
        .map((b) => {
          const data = b.split("\n").find((l) => l.startsWith("data: "))?.slice(6) ?? "";
          return data === "[DONE]" ? data : (JSON.parse(data) as unknown);
        });
    },
  };
}

type Chunk = { id: string; object: string; created: number; model: string; choices: { index: number; delta?: Record<string, unknown>; text?: string; finish_reason: unknown }[]; usage?: unknown };

function run(p: ProfileWire, events: string[], opts: { full?: boolean; clientContinuous?: boolean } = {}) {
  const s = sink(opts);
  const engine = { paused: false, pauses: 0 };
  const ends: RechunkEnd[] = [];
  const r = new Rechunker(
    p,
    s.out,
    {
      pause: () => {
        engine.paused = true;
        engine.pauses++;
      },
      resume: () => {
        engine.paused = false;
      },
    },
    (end) => ends.push(end),
    { clientContinuous: opts.clientContinuous, now: () => Date.now() },
  );
  return { s, r, engine, ends, feed: () => events.forEach((e) => r.push(encoder.encode(e))) };
}

describe("Rechunker", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("coalesces one-token deltas into chunks of the profile's size, keeping the chunk shape, finish on the last content chunk", () => {
    const words = ["a", " b", " c", " d", " e", " f", " g", " h", " i", " j", " k", " l"];
    const { s, feed, ends } = run(profile({ chunk_tokens: 5 }), engineChat(words));
    feed();
    vi.runAllTimers();
    const events = s.events();
    expect(events.at(-1)).toBe("[DONE]");
    const chunks = events.slice(0, -1) as Chunk[];
    // role, 5, 5, 2 (+finish), usage
    expect(chunks).toHaveLength(5);
    for (const c of chunks) expect({ id: c.id, object: c.object, created: c.created, model: c.model }).toEqual(HEAD);
    expect(chunks[0]?.choices[0]?.delta).toEqual({ role: "assistant", content: "" });
    expect(chunks.slice(1, 4).map((c) => c.choices[0]?.delta?.content)).toEqual(["a b c d e", " f g h i j", " k l"]);
    expect(chunks.slice(1, 3).map((c) => c.choices[0]?.finish_reason)).toEqual([null, null]);
    expect(chunks[3]?.choices[0]?.finish_reason).toBe("stop");
    expect(chunks[4]?.choices).toEqual([]);
    // Running usage the client did not ask for is not on its chunks.
    expect(chunks.slice(0, 4).every((c) => !("usage" in c))).toBe(true);
    expect(ends).toEqual(["complete"]);
  });

  it("marks each event with its tokens, so the gateway's tap counts delivered tokens exactly", () => {
    const words = Array.from({ length: 23 }, (_, i) => ` w${i}`);
    const { s, feed } = run(profile({ chunk_tokens: 10 }), engineChat(words));
    feed();
    vi.runAllTimers();
    const tap = new UsageTap(true);
    const passed = s.writes.map((w) => tap.push(encoder.encode(w.text)));
    expect(tap.deliveredChunks).toBe(23);
    expect(tap.usage).toEqual({ promptTokens: 7, completionTokens: 23, cachedPromptTokens: 0 });
    // The tap strips the usage chunk the client did not ask for, comments and all.
    expect(passed.map((b) => (b ? new TextDecoder().decode(b) : "")).join("")).not.toContain('"choices":[]');
  });

  it("splits a delta worth more tokens than a chunk (by the engine's running usage), losing no text", () => {
    const role = { ...HEAD, choices: [{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }], usage: { prompt_tokens: 3, completion_tokens: 0, total_tokens: 3 } };
    const big = { ...HEAD, choices: [{ index: 0, delta: { content: "abcdef" }, finish_reason: "length" }], usage: { prompt_tokens: 3, completion_tokens: 6, total_tokens: 9 } };
    const { s, r } = run(profile({ chunk_tokens: 2 }), []);
    r.push(encoder.encode(`data: ${JSON.stringify(role)}\n\ndata: ${JSON.stringify(big)}\n\ndata: [DONE]\n\n`));
    vi.runAllTimers();
    const chunks = (s.events().slice(1, -1) as Chunk[]).map((c) => c.choices[0]);
    expect(chunks.map((c) => c?.delta?.content)).toEqual(["ab", "cd", "ef"]);
    expect(chunks.map((c) => c?.finish_reason)).toEqual([null, null, "length"]);
    expect(s.writes.map((w) => w.text).join("")).toContain(": tokens=2\n");
  });

  it("paces chunks at least interval_ms apart", () => {
    const words = Array.from({ length: 6 }, (_, i) => `t${i}`);
    const { s, feed } = run(profile({ chunk_tokens: 1, interval_ms: 40 }), engineChat(words));
    feed();
    vi.runAllTimers();
    const content = s.writes.filter((w) => w.text.includes('"content":"t'));
    expect(content).toHaveLength(6);
    for (let i = 1; i < content.length; i++) expect((content[i]?.at ?? 0) - (content[i - 1]?.at ?? 0)).toBeGreaterThanOrEqual(40);
  });

  it("passes tool-call deltas whole and in order, after the content before them", () => {
    const tool = (call: Record<string, unknown>) => ({ ...HEAD, choices: [{ index: 0, delta: { tool_calls: [{ index: 0, ...call }] }, finish_reason: null }] });
    const events = [
      { ...HEAD, choices: [{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }] },
      { ...HEAD, choices: [{ index: 0, delta: { content: "Let me" }, finish_reason: null }] },
      tool({ id: "call_1", type: "function", function: { name: "get_weather", arguments: "" } }),
      tool({ function: { arguments: '{"city": "Paris"}' } }),
      { ...HEAD, choices: [{ index: 0, delta: {}, finish_reason: "tool_calls" }] },
    ].map((e) => `data: ${JSON.stringify(e)}\n\n`);
    const { s, feed } = run(profile({ chunk_tokens: 10 }), [...events, "data: [DONE]\n\n"]);
    feed();
    vi.runAllTimers();
    const chunks = s.events().slice(0, -1) as Chunk[];
    expect(chunks.map((c) => Object.keys(c.choices[0]?.delta ?? {}).join())).toEqual(["role,content", "content", "tool_calls", "tool_calls", ""]);
    expect(chunks[1]?.choices[0]?.delta?.content).toBe("Let me");
    expect(chunks[4]?.choices[0]?.finish_reason).toBe("tool_calls");
    expect(JSON.stringify(chunks[2]?.choices[0]?.delta)).toContain("get_weather");
  });

  it("keeps the completions shape (choices[].text) for a prompt body", () => {
    const c = (text: string, finish: string | null) => ({ id: "cmpl-1", object: "text_completion", created: 1, model: "m", choices: [{ index: 0, text, logprobs: null, finish_reason: finish, stop_reason: null }], usage: null });
    const events = ["x", "y", "z"].map((t, i) => `data: ${JSON.stringify(c(t, i === 2 ? "length" : null))}\n\n`);
    const { s, feed } = run(profile({ chunk_tokens: 2 }), [...events, "data: [DONE]\n\n"]);
    feed();
    vi.runAllTimers();
    const chunks = s.events().slice(0, -1) as Chunk[];
    expect(chunks.map((ch) => [ch.object, ch.choices[0]?.text, ch.choices[0]?.finish_reason])).toEqual([
      ["text_completion", "xy", null],
      ["text_completion", "z", "length"],
    ]);
  });

  it("keeps running usage on the chunks when the client asked for it", () => {
    const { s, feed } = run(profile({ chunk_tokens: 2 }), engineChat(["a", "b", "c", "d"]), { clientContinuous: true });
    feed();
    vi.runAllTimers();
    const chunks = s.events().slice(1, 3) as Chunk[];
    expect(chunks.map((c) => (c.usage as { completion_tokens: number }).completion_tokens)).toEqual([2, 4]);
  });

  it("pauses the engine when the buffer is full and the client is not reading, and resumes it once the client drains", () => {
    const words = Array.from({ length: 200 }, (_, i) => ` w${i}`);
    const { s, r, engine, feed } = run(profile({ chunk_tokens: 5, buffer_tokens: 20 }), engineChat(words), { full: true });
    const events = engineChat(words);
    let fed = 0;
    // Feed like a paused socket would: stop at the first pause.
    for (const e of events) {
      if (engine.paused) break;
      r.push(encoder.encode(e));
      fed++;
    }
    expect(engine.paused).toBe(true);
    // One write went out before the client's socket said it was full; the rest waits, bounded by the buffer.
    expect(fed).toBeLessThanOrEqual(22);
    s.drain();
    vi.runAllTimers();
    expect(engine.paused).toBe(false);
    void feed;
  });

  it("ends at the time limit with a usage chunk for what was delivered, an in-band error and [DONE]", () => {
    const words = Array.from({ length: 50 }, (_, i) => ` w${i}`);
    const { s, r, ends } = run(profile({ chunk_tokens: 2, interval_ms: 100 }), engineChat(words));
    for (const e of engineChat(words)) r.push(encoder.encode(e));
    vi.advanceTimersByTime(250); // role at 0, 2 tokens at 100 and 200
    r.timeout();
    const events = s.events();
    expect(events.at(-1)).toBe("[DONE]");
    const error = events.at(-2) as { error: { code: string; message: string } };
    expect(error.error.code).toBe("stream_timeout");
    expect(error.error.message).toContain("'test' streaming profile");
    const usage = events.at(-3) as Chunk;
    expect(usage.choices).toEqual([]);
    expect(usage.usage).toEqual({ prompt_tokens: 7, total_tokens: 11, completion_tokens: 4 });
    expect(ends).toEqual(["timed_out"]);
    // Nothing more is written after the end, and no timer is left.
    vi.runAllTimers();
    expect(s.events().at(-1)).toBe("[DONE]");
    expect(vi.getTimerCount()).toBe(0);
  });

  it("ends a stream the engine broke off after sending what it had, with delivered usage and an error", () => {
    const events = engineChat(["a", "b", "c"]).slice(0, 3); // role, a, b
    const { s, r, ends } = run(profile({ chunk_tokens: 5 }), []);
    for (const e of events) r.push(encoder.encode(e));
    r.end("broke");
    const out = s.events();
    expect((out[1] as Chunk).choices[0]?.delta?.content).toBe("ab");
    expect((out[2] as Chunk).usage).toEqual({ prompt_tokens: 7, total_tokens: 9, completion_tokens: 2 });
    expect((out[3] as { error: { code: string } }).error.code).toBe("engine_stream_failed");
    expect(out[4]).toBe("[DONE]");
    expect(ends).toEqual(["engine_broke"]);
  });

  it("counts one token per content delta when the engine reports no running usage", () => {
    const { s, feed } = run(profile({ chunk_tokens: 3 }), engineChat(["a", "b", "c", "d"], { usageEach: false }));
    feed();
    vi.runAllTimers();
    const chunks = s.events().slice(1, 3) as Chunk[];
    expect(chunks.map((c) => c.choices[0]?.delta?.content)).toEqual(["abc", "d"]);
  });

  it("clears its pacing timer when cancelled", () => {
    const { r, ends } = run(profile({ chunk_tokens: 1, interval_ms: 1000 }), []);
    for (const e of engineChat(["a", "b", "c"])) r.push(encoder.encode(e));
    expect(vi.getTimerCount()).toBe(1);
    r.cancel();
    expect(vi.getTimerCount()).toBe(0);
    expect(ends).toEqual(["cancelled"]);
  });
});
