// The SSE usage tap, shared by the gateway (worker/src/proxy/sse-tap.ts, for backplanes that do
// not report streams) and the backplane (backplane/src/proxy/report-tap.ts): it learns a stream's
// usage, errors and `[DONE]` from its events and can cut the usage-only chunk out exactly, without
// re-encoding anything. Any SSE framing is understood (sse-parser.ts).
import { MAX_LINE_BYTES, SseParser, type SseEvent, type SseSink } from "./sse-parser.ts";
import { TOKENS_COMMENT } from "./stream-profile.ts";


/** The delta of a choice's opening chunk as vLLM (and the simulator) sends it: the role, no content. */
const OPENING_DELTA = '"delta":{"role":"assistant","content":""}';
/** Token usage as reported by the engine. */
export interface Usage {
  promptTokens: number;
  completionTokens: number;
  cachedPromptTokens: number;
}

function count(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) && value >= 0 ? Math.floor(value) : 0;
}

function cachedOf(details: unknown): number {
  return typeof details === "object" && details !== null ? count((details as Record<string, unknown>).cached_tokens) : 0;
}

/**
 * Reads a `usage` object; null when absent or not an object. Three shapes: OpenAI/vLLM chat and
 * completions (`prompt_tokens`, `completion_tokens`, cached tokens a subset of the prompt's), the
 * Responses API (`input_tokens`, `output_tokens`, `input_tokens_details.cached_tokens` a subset) and
 * Anthropic Messages (`input_tokens` is the uncached input only: the whole prompt adds
 * `cache_creation_input_tokens` and `cache_read_input_tokens`, the latter being the cached part;
 * vLLM counts every prompt token in `input_tokens` and sends no cache fields).
 */
export function parseUsage(raw: unknown): Usage | null {
  if (typeof raw !== "object" || raw === null) return null;
  const u = raw as Record<string, unknown>;
  if (u.prompt_tokens === undefined && (u.input_tokens !== undefined || u.output_tokens !== undefined)) {
    const cacheRead = count(u.cache_read_input_tokens);
    const input = count(u.input_tokens) + count(u.cache_creation_input_tokens) + cacheRead;
    return { promptTokens: input, completionTokens: count(u.output_tokens), cachedPromptTokens: cacheRead || cachedOf(u.input_tokens_details) };
  }
  // Rerank reports only `total_tokens`: all of them input.
  const prompt = u.prompt_tokens === undefined && u.completion_tokens === undefined ? count(u.total_tokens) : count(u.prompt_tokens);
  return { promptTokens: prompt, completionTokens: count(u.completion_tokens), cachedPromptTokens: cachedOf(u.prompt_tokens_details) };
}

/**
 * The SSE dialect of a stream. `openai`: chat and completions, `data:` events ending with `[DONE]`,
 * usage in the last chunk. `anthropic`: Messages, named events (`event: message_start` …) ending
 * with `message_stop`, input tokens in `message_start` and the cumulative output in the last
 * `message_delta`; errors are `event: error`. `responses`: OpenAI's Responses API, typed events
 * (`event: response.output_text.delta` …) ending with `response.completed` (or `.incomplete`,
 * `.failed`), whose `response.usage` is the usage; errors are `event: error`.
 */
export type SseDialect = "openai" | "anthropic" | "responses";

const LF = 10;
const encoder = new TextEncoder();
const TOKENS_BYTES = encoder.encode(TOKENS_COMMENT);
const EMPTY: Uint8Array = new Uint8Array(0);
/** The most bytes of one block held back while it may still be the usage chunk to remove. */
const MAX_HELD_BYTES = MAX_LINE_BYTES;

/** An engine's in-band error event, `{"error": …}`: looks at the first characters only (this runs per event). */
function isEngineError(data: string): boolean {
  let i = 0;
  while (i < data.length && data.charCodeAt(i) <= 32) i++;
  if (data.charCodeAt(i) !== 123) return false; // {
  i++;
  while (i < data.length && data.charCodeAt(i) <= 32) i++;
  return data.startsWith('"error"', i);
}
// A chunk whose `choices` has an element is not the usage-only chunk. OpenAI and vLLM write
// `choices` before the content, so a content event split across reads is released after ~100 bytes.
const HAS_CHOICE = /"choices"\s*:\s*\[\s*[^\s\]]/;

/**
 * The per-stream state of the tap: learns usage, errors and `[DONE]` from the parser's events and,
 * when it must remove the usage chunk, decides which bytes of each chunk go to the client.
 */
export class UsageTap implements SseSink {
  usage: Usage | null = null;
  sawDone = false;
  sawError = false;
  /**
   * Content events delivered, each counted as one token unless a `: tokens=N` comment in its block
   * says N (re-chunked profile streams): a lower bound on completion tokens when usage is missing.
   */
  deliveredChunks = 0;
  private blockTokens = 1;
  private readonly parser = new SseParser();
  /** The current block's bytes are held back: it may be the usage chunk to remove. */
  private holding: boolean;
  private held: Uint8Array[] = [];
  private heldBytes = 0;
  /** The last block ended was removed (so is the LF of its CRLF when it starts the next chunk). */
  private lastRemoved = false;
  /** The last chunk ended with the CR of the blank line that ended a block. */
  private crEndedBlock = false;
  // Output of the chunk being pushed: whole pieces, then a run [runStart, runEnd) of the chunk.
  private chunk = EMPTY;
  private cursor = 0;
  private pieces: Uint8Array[] = [];
  private runStart = 0;
  private runEnd = 0;

  private readonly stripUsage: boolean;
  private readonly dialect: SseDialect;
  /** Anthropic: a message_delta reported the output tokens (before that, delivered deltas bound them). */
  private outputReported = false;

  /** `stripUsage` (OpenAI dialect only: Anthropic streams carry usage in events the client needs). */
  constructor(stripUsage: boolean, dialect: SseDialect = "openai") {
    this.dialect = dialect;
    this.stripUsage = stripUsage && dialect === "openai";
    this.holding = this.stripUsage;
  }

  /** The bytes to pass on for a chunk: all of it, unless it carries (part of) the usage chunk to remove. */
  push(chunk: Uint8Array): Uint8Array | null {
    if (!this.stripUsage) {
      this.parser.push(chunk, this);
      return chunk;
    }
    this.chunk = chunk;
    this.cursor = 0;
    this.pieces = [];
    this.runStart = this.runEnd = 0;
    if (this.crEndedBlock && chunk[0] === LF) {
      // The LF of a CRLF that ended the previous block goes where that block went.
      this.cursor = 1;
      if (!this.lastRemoved) this.emit(0, 1);
    }
    if (chunk.length > 0) this.crEndedBlock = false;
    this.parser.push(chunk, this);
    const n = chunk.length;
    if (this.cursor < n) {
      if (this.holding && (this.heldBytes + n - this.cursor > MAX_HELD_BYTES || !this.mayBeUsageChunk())) this.release();
      if (this.holding) {
        this.held.push(chunk.slice(this.cursor));
        this.heldBytes += n - this.cursor;
      } else this.emit(this.cursor, n);
    }
    return this.output();
  }

  /** The stream ended: the bytes of an unterminated last block, if they are to be passed on. */
  finish(): { rest: Uint8Array | null; midEvent: boolean } {
    const midEvent = this.parser.inBlock;
    this.chunk = EMPTY;
    this.cursor = 0;
    this.pieces = [];
    this.runStart = this.runEnd = 0;
    this.parser.finish(this);
    return { rest: this.output(), midEvent: midEvent && !this.lastRemoved };
  }

  /**
   * Everything the stream's reader gets after the last chunk: the bytes of an unterminated last
   * block, then, unless the stream ended (`[DONE]`, or Anthropic's `message_stop`) and did not fail,
   * `failureEvent` (an error event, and `[DONE]` in the OpenAI dialect), or only what ends the
   * stream when the engine already sent its own error event (`[DONE]`; nothing for Anthropic); after
   * a blank line when the cut was inside an event, so the error event parses on its own. Ends the tap.
   */
  ending(failed: boolean, failureEvent: string): Uint8Array[] {
    const out: Uint8Array[] = [];
    const { rest, midEvent } = this.finish();
    if (rest) out.push(rest);
    if (this.sawDone && !failed) return out;
    const close = midEvent ? "\n\n" : "";
    // Only the OpenAI dialect ends with `[DONE]`; the others end on their error event.
    const tail = this.sawError ? (this.dialect === "openai" ? "data: [DONE]\n\n" : "") : failureEvent;
    if (close + tail !== "") out.push(encoder.encode(close + tail));
    this.sawError = true;
    return out;
  }

  /** `: tokens=N` (stream-profile.ts): the block's event carries N tokens, not one. */
  comment(line: Uint8Array, start: number, stop: number): void {
    if (stop - start <= TOKENS_BYTES.length || stop - start > TOKENS_BYTES.length + 6) return;
    for (let i = 0; i < TOKENS_BYTES.length; i++) if (line[start + i] !== TOKENS_BYTES[i]) return;
    let n = 0;
    for (let i = start + TOKENS_BYTES.length; i < stop; i++) {
      const d = (line[i] ?? 0) - 48;
      if (d < 0 || d > 9) return;
      n = n * 10 + d;
    }
    this.blockTokens = n;
  }

  /** Tokens the current block's content event delivers: one, unless a tokens comment said otherwise. */
  private takeTokens(): number {
    const n = this.blockTokens;
    this.blockTokens = 1;
    return n;
  }

  /** For an event that delivered no token: its `: tokens=` count (if any) is spent on nothing. */
  private takeNothing(): number {
    this.blockTokens = 1;
    return 0;
  }

  blockEnd(end: number, event: SseEvent | null): void {
    const usageOnly = event !== null && this.inspect(event);
    this.blockTokens = 1;
    if (!this.stripUsage) return;
    const remove = usageOnly && this.holding;
    if (remove) this.held = [];
    else {
      this.release();
      this.emit(this.cursor, end);
    }
    this.heldBytes = 0;
    this.cursor = end;
    this.holding = true;
    this.lastRemoved = remove;
    this.crEndedBlock = this.parser.awaitingLF;
  }

  /** Learns from one event; true when it is the usage-only chunk (`choices: []` with `usage`). */
  private inspect(event: SseEvent): boolean {
    if (this.dialect === "anthropic") {
      this.inspectAnthropic(event);
      return false;
    }
    if (this.dialect === "responses") {
      this.inspectResponses(event);
      return false;
    }
    if (event.oversized) {
      this.deliveredChunks += this.takeTokens(); // too big to read; a content chunk is all an engine sends that big
      return false;
    }
    const data = event.data;
    if (data === "[DONE]") {
      this.sawDone = true;
      return false;
    }
    if (data.length === 0) return false;
    if (isEngineError(data)) {
      this.sawError = true;
      return false;
    }
    // A choice's opening chunk (vLLM's `"delta":{"role":"assistant","content":""}`) delivers no token.
    const opening = data.includes(OPENING_DELTA);
    if (!data.includes('"usage"')) {
      this.deliveredChunks += opening ? this.takeNothing() : this.takeTokens();
      return false;
    }
    let chunk: { choices?: unknown[]; usage?: unknown };
    try {
      chunk = JSON.parse(data) as { choices?: unknown[]; usage?: unknown };
    } catch {
      this.deliveredChunks += this.takeTokens();
      return false;
    }
    const usage = parseUsage(chunk.usage);
    if (usage) this.usage = usage;
    const usageOnly = Array.isArray(chunk.choices) && chunk.choices.length === 0;
    if (!usageOnly) this.deliveredChunks += opening ? this.takeNothing() : this.takeTokens();
    return usageOnly;
  }

  /**
   * Anthropic Messages events: `message_start` carries the input tokens, each `message_delta` the
   * cumulative usage (overwrite, never add: the SDK's MessageStream does the same), `message_stop`
   * ends the stream, `event: error` is the engine's error; content deltas are what was delivered.
   */
  private inspectAnthropic(event: SseEvent): void {
    switch (event.type) {
      case "content_block_delta":
        this.deliveredChunks++;
        // Until a message_delta reports the output, each delivered delta is at least one token:
        // a stream cut after message_start is metered for what it delivered, not for zero.
        if (this.usage && !this.outputReported && this.usage.completionTokens < this.deliveredChunks) this.usage.completionTokens = this.deliveredChunks;
        return;
      case "message_stop":
        this.sawDone = true;
        return;
      case "error":
        this.sawError = true;
        return;
      case "message_start":
      case "message_delta":
        break;
      default:
        return;
    }
    if (event.oversized) return;
    let parsed: { message?: { usage?: unknown }; usage?: unknown };
    try {
      parsed = JSON.parse(event.data) as typeof parsed;
    } catch {
      return;
    }
    const raw = event.type === "message_start" ? parsed.message?.usage : parsed.usage;
    if (typeof raw !== "object" || raw === null) return;
    const fields = raw as Record<string, unknown>;
    if (event.type === "message_delta" && fields.output_tokens !== undefined) this.outputReported = true;
    const next = parseUsage(raw);
    if (!next) return;
    // A message_delta may omit the input counts: keep the ones message_start gave.
    const hasInput = fields.input_tokens !== undefined || fields.cache_read_input_tokens !== undefined || fields.cache_creation_input_tokens !== undefined;
    this.usage = {
      promptTokens: hasInput || !this.usage ? next.promptTokens : this.usage.promptTokens,
      completionTokens: fields.output_tokens !== undefined || !this.usage ? next.completionTokens : this.usage.completionTokens,
      cachedPromptTokens: hasInput || !this.usage ? next.cachedPromptTokens : this.usage.cachedPromptTokens,
    };
  }

  /**
   * Responses API events: every `*.delta` is delivered output; the terminal `response.completed`,
   * `response.incomplete` or `response.failed` carries the response with its usage (a failed one
   * also marks the stream failed); `error` is the engine's error. The type is the `event:` field, as
   * vLLM and OpenAI send it, else the payload's `type`.
   */
  private inspectResponses(event: SseEvent): void {
    let type = event.type;
    if (type === "message") {
      const found = /"type"\s*:\s*"([^"]+)"/.exec(event.data);
      type = found?.[1] ?? "";
    }
    if (type.endsWith(".delta")) {
      this.deliveredChunks++;
      return;
    }
    if (type === "error") {
      this.sawError = true;
      return;
    }
    if (type !== "response.completed" && type !== "response.incomplete" && type !== "response.failed") return;
    this.sawDone = true;
    if (type === "response.failed") this.sawError = true;
    if (event.oversized) return;
    try {
      const usage = parseUsage((JSON.parse(event.data) as { response?: { usage?: unknown } }).response?.usage);
      if (usage) this.usage = usage;
    } catch {
      // Not JSON: the stream is metered by what it delivered.
    }
  }

  /** Whether the block held so far can still turn out to be the usage-only chunk. */
  private mayBeUsageChunk(): boolean {
    const data = this.parser.peekData();
    if (data === null) return true;
    const start = data.trimStart();
    if (start.length === 0) return true;
    return start[0] === "{" && !HAS_CHOICE.test(start);
  }

  /** Stops holding the current block: what was held goes out, the rest of the block passes as it comes. */
  private release(): void {
    this.holding = false;
    if (this.held.length === 0) return;
    this.flushRun();
    this.pieces.push(...this.held);
    this.held = [];
  }

  private emit(from: number, to: number): void {
    if (from === to) return;
    if (from !== this.runEnd || this.runStart === this.runEnd) {
      this.flushRun();
      this.runStart = from;
    }
    this.runEnd = to;
  }

  private flushRun(): void {
    if (this.runEnd > this.runStart) this.pieces.push(this.chunk.subarray(this.runStart, this.runEnd));
    this.runStart = this.runEnd = 0;
  }

  private output(): Uint8Array | null {
    if (this.pieces.length === 0 && this.runStart === 0 && this.runEnd === this.chunk.length) return this.chunk.length > 0 ? this.chunk : null;
    this.flushRun();
    if (this.pieces.length === 0) return null;
    if (this.pieces.length === 1) return this.pieces[0] ?? null;
    const out = new Uint8Array(this.pieces.reduce((sum, piece) => sum + piece.length, 0));
    let at = 0;
    for (const piece of this.pieces) {
      out.set(piece, at);
      at += piece.length;
    }
    return out;
  }
}
