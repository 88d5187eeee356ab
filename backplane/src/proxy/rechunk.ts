import type { IncomingMessage, ServerResponse } from "node:http";
import { SseParser, type SseEvent, type SseSink } from "../../../schema/contracts/sse-parser.ts";
import { PROFILE_TIMEOUT_CODE, type ProfileWire } from "../../../schema/contracts/stream-profile.ts";

/** Where the re-chunked stream goes (the gateway's response), with its backpressure. */
export interface RechunkOutput {
  /** Writes bytes; false when the receiver is full (wait for `onDrain`). */
  write(text: string): boolean;
  end(): void;
  /** Calls `cb` once when a full receiver can take more. */
  onDrain(cb: () => void): void;
}

/** The engine's side: paused while the buffer is full. */
export interface RechunkEngine {
  pause(): void;
  resume(): void;
}

/** How a re-chunked stream ended. */
export type RechunkEnd = "complete" | "engine_broke" | "timed_out" | "cancelled";

type Json = Record<string, unknown>;
type Field = "content" | "reasoning_content" | "reasoning" | "text";

/** One thing waiting to go to the client, in engine order. */
type Item =
  /** Text of one content field, worth `tokens` tokens; `logprobs` when the engine sent them (never split). */
  | { kind: "text"; field: Field; text: string; tokens: number; logprobs: Json | null; chunk: Json; choice: Json }
  /** An engine chunk sent as it is, paced like content (tool-call deltas, role chunks, other choices' chunks). */
  | { kind: "chunk"; data: Json; tokens: number }
  /** The engine's finish_reason (and stop_reason) for the choice, put on the last content chunk. */
  | { kind: "finish"; finishReason: unknown; stopReason: unknown; chunk: Json; choice: Json }
  /** An event written as it is, unpaced: the usage chunk, an engine error. */
  | { kind: "raw"; text: string }
  | { kind: "done" };

const DONE_EVENT = "data: [DONE]\n\n";

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The running usage an engine put on a chunk (continuous_usage_stats), if any. */
function usageOf(chunk: Json): { prompt: number; completion: number } | null {
  const u = chunk.usage;
  if (!isObject(u) || typeof u.completion_tokens !== "number") return null;
  return { prompt: typeof u.prompt_tokens === "number" ? u.prompt_tokens : -1, completion: u.completion_tokens };
}

/**
 * Splits `text` into a first part worth `take` of its `tokens` tokens (by code points, in
 * proportion: where a token ends inside a delta is not known here) and the rest.
 */
function splitText(text: string, tokens: number, take: number): [string, string] {
  const points = Array.from(text);
  const cut = Math.min(points.length - 1, Math.max(1, Math.round((points.length * take) / tokens)));
  return [points.slice(0, cut).join(""), points.slice(cut).join("")];
}

/** Concatenates the engine's logprobs objects of merged deltas (chat: `content`; completions: the parallel arrays). */
function mergeLogprobs(parts: (Json | null)[]): Json | null {
  const present = parts.filter((p): p is Json => p !== null);
  if (present.length === 0) return null;
  if (present.length === 1) return present[0] ?? null;
  const merged: Json = {};
  for (const key of Object.keys(present[0] ?? {})) {
    const values = present.map((p) => p[key]);
    merged[key] = values.every(Array.isArray) ? (values as unknown[][]).flat() : values[values.length - 1];
  }
  return merged;
}

/**
 * Re-cuts an engine's OpenAI-dialect SSE stream (chat or completions, one choice) to a streaming
 * profile: content deltas are coalesced, or split, into chunks of the profile's token count, sent
 * no closer than its interval, keeping the engine's chunk shape (id, object, created, model, the
 * choice's fields; role chunk first; finish_reason on the last content chunk; the usage chunk and
 * `[DONE]` as the engine sent them). Tool-call deltas and chunks carrying other choices pass whole
 * and in order (never merged or split). A token is one unit of the engine's running usage
 * (`continuous_usage_stats`, which the backplane asks for), or one content delta when the engine
 * reports none. Each chunk event has a `: tokens=N` comment (stream-profile.ts).
 *
 * At most `buffer_tokens` tokens wait here: beyond that the engine is paused until the client has
 * read enough (backpressure from the client's reads to the engine). `timeout()` drops what waits,
 * writes a usage chunk for what was delivered, an in-band `stream_timeout` error and `[DONE]`.
 * Every timer is cleared on every way out.
 */
export class Rechunker implements SseSink {
  private readonly parser = new SseParser();
  private readonly queue: Item[] = [];
  private queuedTokens = 0;
  private lastEmit = -Infinity;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private waitingDrain = false;
  private enginePaused = false;
  private engineEnded: "complete" | "broke" | null = null;
  private finished = false;
  /** The engine's running completion count (continuous usage), to price each delta. */
  private engineCompletion = 0;
  private engineSawByte = false;
  private promptTokens = -1;
  private delivered = 0;
  private lastChunk: Json | null = null;
  /** The client asked for running usage itself: kept on the chunks it gets. */
  private readonly clientContinuous: boolean;

  private readonly profile: ProfileWire;
  private readonly out: RechunkOutput;
  private readonly engine: RechunkEngine;
  private readonly onEnd: (end: RechunkEnd) => void;
  private readonly now: () => number;

  constructor(profile: ProfileWire, out: RechunkOutput, engine: RechunkEngine, onEnd: (end: RechunkEnd) => void, opts: { clientContinuous?: boolean; now?: () => number } = {}) {
    this.profile = profile;
    this.out = out;
    this.engine = engine;
    this.onEnd = onEnd;
    this.clientContinuous = opts.clientContinuous === true;
    this.now = opts.now ?? (() => performance.now());
  }

  /** Tokens delivered to the client so far. */
  get deliveredTokens(): number {
    return this.delivered;
  }

  /** Bytes from the engine. */
  push(bytes: Uint8Array): void {
    if (this.finished) return;
    this.engineSawByte = true;
    this.parser.push(bytes, this);
    if (this.queuedTokens >= this.profile.buffer_tokens && !this.enginePaused) {
      this.enginePaused = true;
      this.engine.pause();
    }
    this.pump();
  }

  /** The engine's answer ended: whole (`complete`) or cut (`broke`). What waits still goes out, then the ending. */
  end(how: "complete" | "broke"): void {
    if (this.finished || this.engineEnded) return;
    this.parser.finish(this);
    this.engineEnded = how;
    this.pump();
  }

  /** The gateway went away: stop at once. */
  cancel(): void {
    this.close("cancelled");
  }

  /** The profile's time ran out: drop what waits, meter what was delivered, end in band. */
  timeout(): void {
    if (this.finished) return;
    this.queue.length = 0;
    this.queuedTokens = 0;
    const seconds = Math.round(this.profile.timeout_ms / 100) / 10;
    this.writeUsage();
    const message =
      `The '${this.profile.name}' streaming profile's ${seconds} s time limit ended the stream after ${this.delivered} tokens. ` +
      "Ask for fewer tokens (max_tokens), or use a profile with a longer limit, or the plain route, which has none.";
    this.out.write(`data: ${JSON.stringify({ error: { message, type: "timeout_error", param: null, code: PROFILE_TIMEOUT_CODE } })}\n\n${DONE_EVENT}`);
    this.out.end();
    this.close("timed_out");
  }

  blockEnd(_end: number, event: SseEvent | null): void {
    if (event === null || event.oversized) return;
    const data = event.data;
    if (data === "[DONE]") {
      this.enqueue({ kind: "done" });
      return;
    }
    let chunk: unknown;
    try {
      chunk = JSON.parse(data);
    } catch {
      this.enqueue({ kind: "raw", text: `data: ${data}\n\n` });
      return;
    }
    if (!isObject(chunk) || "error" in chunk || !Array.isArray(chunk.choices)) {
      this.enqueue({ kind: "raw", text: `data: ${data}\n\n` });
      return;
    }
    const usage = usageOf(chunk);
    if (usage && usage.prompt >= 0) this.promptTokens = usage.prompt;
    if (chunk.choices.length === 0) {
      // The usage chunk: as the engine sent it (the gateway removes it when the client did not ask).
      this.enqueue({ kind: "raw", text: `data: ${data}\n\n` });
      return;
    }
    this.lastChunk = chunk;
    // Tokens this chunk adds: the running count's step, or one per content-bearing delta.
    let tokens: number | null = null;
    if (usage) {
      tokens = Math.max(0, usage.completion - this.engineCompletion);
      this.engineCompletion = Math.max(this.engineCompletion, usage.completion);
    }
    const choices = chunk.choices as unknown[];
    const choice = choices[0];
    if (choices.length !== 1 || !isObject(choice)) {
      this.enqueue({ kind: "chunk", data: this.forClient(chunk), tokens: tokens ?? 1 });
      return;
    }
    const delta = isObject(choice.delta) ? choice.delta : null;
    const field: Field | null = delta ? (["content", "reasoning_content", "reasoning"] as const).find((f) => typeof delta[f] === "string" && delta[f] !== "") ?? null : typeof choice.text === "string" && choice.text !== "" ? "text" : null;
    const otherKeys = delta ? Object.keys(delta).filter((k) => k !== field && !(k === "content" && (delta.content === "" || delta.content === null))) : [];
    const finish = choice.finish_reason ?? null;
    if (delta && (otherKeys.length > 0 || delta.role !== undefined)) {
      // A role chunk, tool-call deltas, or a delta mixing fields: whole, in order.
      this.enqueue({ kind: "chunk", data: this.forClient(chunk), tokens: tokens ?? (field || delta.tool_calls ? 1 : 0) });
      return;
    }
    if (field) {
      const text = (delta ? delta[field] : choice.text) as string;
      this.enqueue({ kind: "text", field, text, tokens: Math.max(tokens ?? 1, 1), logprobs: isObject(choice.logprobs) ? choice.logprobs : null, chunk, choice });
    }
    if (finish !== null) this.enqueue({ kind: "finish", finishReason: finish, stopReason: choice.stop_reason, chunk, choice });
  }

  private enqueue(item: Item): void {
    this.queue.push(item);
    if (item.kind === "text" || item.kind === "chunk") this.queuedTokens += item.tokens;
  }

  /** A chunk as the client gets it: the engine's running usage only if the client asked for it. */
  private forClient(chunk: Json): Json {
    if (this.clientContinuous || !("usage" in chunk)) return chunk;
    const { usage: _usage, ...rest } = chunk;
    return rest;
  }

  /** Sends what may go now; arms the pacing timer for the rest. */
  private pump(): void {
    if (this.finished || this.waitingDrain) return;
    for (;;) {
      const head = this.queue[0];
      if (!head) {
        if (this.engineEnded) this.finishEngineEnd();
        break;
      }
      if (head.kind === "raw") {
        this.queue.shift();
        if (!this.write(head.text)) return;
        continue;
      }
      if (head.kind === "done") {
        this.queue.shift();
        this.out.write(DONE_EVENT);
        this.out.end();
        this.close("complete");
        return;
      }
      // Content, whole chunks and a lone finish are paced.
      const ready = head.kind === "text" ? this.contentReady() : true;
      if (!ready) break;
      const wait = this.lastEmit + this.profile.interval_ms - this.now();
      if (wait > 0) {
        this.arm(wait);
        break;
      }
      const written = head.kind === "text" ? this.emitContent() : head.kind === "chunk" ? this.emitChunk() : this.emitLoneFinish();
      this.lastEmit = this.now();
      if (this.enginePaused && this.queuedTokens < this.profile.buffer_tokens) {
        this.enginePaused = false;
        this.engine.resume();
      }
      if (!written) return;
    }
  }

  /** The content at the head makes a whole chunk, or nothing more can join it. */
  private contentReady(): boolean {
    let tokens = 0;
    const field = (this.queue[0] as Extract<Item, { kind: "text" }>).field;
    for (const item of this.queue) {
      if (item.kind !== "text" || item.field !== field) return true;
      tokens += item.tokens;
      if (tokens >= this.profile.chunk_tokens) return true;
    }
    return this.engineEnded !== null;
  }

  /** Takes up to chunk_tokens of the head's content (splitting one delta if needed) and writes it as one chunk. */
  private emitContent(): boolean {
    const first = this.queue[0] as Extract<Item, { kind: "text" }>;
    const field = first.field;
    let need = this.profile.chunk_tokens;
    let text = "";
    let tokens = 0;
    const logprobs: (Json | null)[] = [];
    let last = first;
    while (need > 0) {
      const item = this.queue[0];
      if (!item || item.kind !== "text" || item.field !== field) break;
      last = item;
      if (item.tokens <= need || item.logprobs !== null || Array.from(item.text).length < 2) {
        this.queue.shift();
        text += item.text;
        tokens += item.tokens;
        need -= item.tokens;
        logprobs.push(item.logprobs);
        this.queuedTokens -= item.tokens;
      } else {
        const [head, rest] = splitText(item.text, item.tokens, need);
        text += head;
        tokens += need;
        item.text = rest;
        item.tokens -= need;
        this.queuedTokens -= need;
        need = 0;
      }
    }
    // The finish goes on this chunk when no content of the choice is left before it.
    const next = this.queue[0];
    const finish = next?.kind === "finish" ? next : null;
    if (finish) this.queue.shift();
    const choice: Json = {};
    for (const [k, v] of Object.entries(last.choice)) {
      if (k === "delta") choice.delta = { [field]: text };
      else if (k === "text") choice.text = text;
      else if (k === "logprobs") choice.logprobs = mergeLogprobs(logprobs);
      else if (k === "finish_reason") choice.finish_reason = finish ? finish.finishReason : null;
      else if (k === "stop_reason") choice.stop_reason = finish ? finish.stopReason : null;
      else choice[k] = v;
    }
    if (finish && !("finish_reason" in choice)) choice.finish_reason = finish.finishReason;
    if (finish && finish.stopReason !== undefined && !("stop_reason" in choice)) choice.stop_reason = finish.stopReason;
    const source = finish ? finish.chunk : last.chunk;
    const chunk: Json = {};
    for (const [k, v] of Object.entries(source)) chunk[k] = k === "choices" ? [choice] : v;
    return this.writeChunk(this.forClient(chunk), tokens);
  }

  private emitChunk(): boolean {
    const item = this.queue.shift() as Extract<Item, { kind: "chunk" }>;
    this.queuedTokens -= item.tokens;
    return this.writeChunk(item.data, item.tokens);
  }

  /** A finish with no content left to carry it: the engine's own last chunk shape, an empty delta. */
  private emitLoneFinish(): boolean {
    const item = this.queue.shift() as Extract<Item, { kind: "finish" }>;
    return this.writeChunk(this.forClient(item.chunk), 0);
  }

  private writeChunk(chunk: Json, tokens: number): boolean {
    this.delivered += tokens;
    // Also on events without tokens (the role chunk, a lone finish): the gateway's tap counts an unmarked event as one.
    return this.write(`: tokens=${tokens}\ndata: ${JSON.stringify(chunk)}\n\n`);
  }

  private write(text: string): boolean {
    if (this.out.write(text)) return true;
    this.waitingDrain = true;
    this.out.onDrain(() => {
      this.waitingDrain = false;
      this.pump();
    });
    return false;
  }

  private arm(ms: number): void {
    if (this.timer !== null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.pump();
    }, ms);
  }

  /**
   * The engine's answer ended without `[DONE]` (its connection broke, or it closed early) and
   * everything before went out: a usage chunk for what was delivered, the in-band error, `[DONE]`.
   */
  private finishEngineEnd(): void {
    this.writeUsage();
    const message = "The inference engine failed in the middle of the stream.";
    this.out.write(`data: ${JSON.stringify({ error: { message, type: "api_error", param: null, code: "engine_stream_failed" } })}\n\n${DONE_EVENT}`);
    this.out.end();
    this.close(this.engineEnded === "complete" ? "complete" : "engine_broke");
  }

  /** A usage chunk for what was delivered, when the engine's own will not come. */
  private writeUsage(): void {
    const prompt = this.promptTokens >= 0 ? this.promptTokens : this.engineSawByte ? this.profile.prompt_tokens_estimate : 0;
    const base: Json = this.lastChunk ? Object.fromEntries(Object.entries(this.lastChunk).filter(([k]) => k !== "choices" && k !== "usage")) : {};
    const usage = { prompt_tokens: prompt, total_tokens: prompt + this.delivered, completion_tokens: this.delivered };
    this.out.write(`data: ${JSON.stringify({ ...base, choices: [], usage })}\n\n`);
  }

  private close(how: RechunkEnd): void {
    if (this.finished) return;
    this.finished = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.queue.length = 0;
    this.onEnd(how);
  }
}

/** A re-chunked engine answer in progress (pipeRechunked). */
export interface ProfilePipe {
  /** The re-chunker paused the engine (its buffer is full): the caller must not resume it. */
  holdsEngine(): boolean;
}

/**
 * Sends an engine's SSE answer to the gateway through a Rechunker (the headers are already
 * written; `first` is the engine's first chunk, already read). The profile's deadline (`deadlineAt`,
 * performance.now() time) ends the stream in band; the gateway going away cancels it. Either way
 * the engine request is destroyed (vLLM aborts the sequence) and `onEnd` is called once; the
 * deadline timer is cleared on every way out.
 */
export function pipeRechunked(
  engineRes: IncomingMessage,
  res: ServerResponse,
  first: Buffer,
  opts: { profile: ProfileWire; clientContinuous: boolean; deadlineAt: number },
  onEnd: (end: RechunkEnd, deliveredTokens: number) => void,
): ProfilePipe {
  let held = false;
  const rechunker: Rechunker = new Rechunker(
    opts.profile,
    { write: (text) => res.write(text), end: () => res.end(), onDrain: (cb) => res.once("drain", cb) },
    {
      pause: () => {
        held = true;
        engineRes.pause();
      },
      resume: () => {
        held = false;
        engineRes.resume();
      },
    },
    (end) => {
      clearTimeout(deadline);
      if (end === "timed_out" || end === "cancelled") engineRes.destroy();
      onEnd(end, rechunker.deliveredTokens);
    },
    { clientContinuous: opts.clientContinuous },
  );
  const deadline = setTimeout(() => (res.destroyed ? rechunker.cancel() : rechunker.timeout()), Math.max(0, opts.deadlineAt - performance.now()));
  const view = (chunk: Buffer) => new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  engineRes.on("error", () => {});
  res.once("close", () => {
    if (!res.writableFinished) rechunker.cancel();
  });
  if (res.destroyed) rechunker.cancel();
  else rechunker.push(view(first));
  engineRes.on("data", (chunk: Buffer) => rechunker.push(view(chunk)));
  engineRes.on("close", () => rechunker.end(engineRes.complete ? "complete" : "broke"));
  return { holdsEngine: () => held };
}
