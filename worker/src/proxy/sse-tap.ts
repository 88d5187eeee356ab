import { sseErrorEvent } from "../errors.ts";
import { MAX_LINE_BYTES, SseParser, type SseEvent, type SseSink } from "./sse-parser.ts";
import { outcomeOnce, parseUsage, type StreamOutcome, type Usage } from "./usage.ts";

const LF = 10;
const encoder = new TextEncoder();
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
class Tap implements SseSink {
  usage: Usage | null = null;
  sawDone = false;
  sawError = false;
  deliveredChunks = 0;
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

  constructor(stripUsage: boolean) {
    this.stripUsage = stripUsage;
    this.holding = stripUsage;
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

  blockEnd(end: number, event: SseEvent | null): void {
    const usageOnly = event !== null && this.inspect(event);
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
    if (event.oversized) {
      this.deliveredChunks++; // too big to read; a content chunk is all an engine sends that big
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
    if (!data.includes('"usage"')) {
      this.deliveredChunks++;
      return false;
    }
    let chunk: { choices?: unknown[]; usage?: unknown };
    try {
      chunk = JSON.parse(data) as { choices?: unknown[]; usage?: unknown };
    } catch {
      this.deliveredChunks++;
      return false;
    }
    const usage = parseUsage(chunk.usage);
    if (usage) this.usage = usage;
    const usageOnly = Array.isArray(chunk.choices) && chunk.choices.length === 0;
    if (!usageOnly) this.deliveredChunks++;
    return usageOnly;
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

/**
 * Passes an SSE body through as it arrives, without re-encoding: each chunk goes to the client as
 * soon as it is read, except the bytes of the usage chunk the client did not ask for, which are cut
 * out exactly (a block that may be that chunk waits until it ends, at most MAX_HELD_BYTES; a longer
 * one is passed on and kept). It learns the usage of the stream, and if the upstream ends without
 * `[DONE]` or fails, it ends the client's stream with an in-band error event and `[DONE]` instead of
 * truncating a 200 silently. Any SSE framing is understood (sse-parser.ts).
 *
 * A pull-based stream rather than a TransformStream: each chunk costs one read and one enqueue, not
 * the writable side's promises as well (a streamed answer is a few dozen chunks; this is the hot
 * path's largest per-chunk cost, bench/). With a high-water mark of 0 nothing is read ahead of the
 * client, so backpressure reaches the engine unchanged.
 */
export function tapSse(
  source: ReadableStream<Uint8Array>,
  opts: { stripUsage: boolean; now?: () => number },
): { body: ReadableStream<Uint8Array>; done: Promise<StreamOutcome> } {
  const now = opts.now ?? Date.now;
  const tap = new Tap(opts.stripUsage);
  let firstByteAt: number | null = null;
  const reader = source.getReader();
  const reported = outcomeOnce();
  const outcome = (status: StreamOutcome["status"], errorCode: string | null): StreamOutcome => ({
    status,
    usage: tap.usage,
    firstByteAt,
    deliveredChunks: tap.deliveredChunks,
    errorCode,
  });

  /** What the client gets after the last chunk: the rest, and an error event unless the stream ended well. */
  const ending = (upstreamFailed: boolean): Uint8Array[] => {
    const out: Uint8Array[] = [];
    const { rest, midEvent } = tap.finish();
    if (rest) out.push(rest);
    if (tap.sawDone && !upstreamFailed) return out;
    // A stream cut inside an event: end that event so the error event parses on its own.
    const close = midEvent ? "\n\n" : "";
    if (tap.sawError) out.push(encoder.encode(`${close}data: [DONE]\n\n`));
    else {
      tap.sawError = true;
      out.push(encoder.encode(close + sseErrorEvent("The GPU node stopped responding in the middle of the stream. Retry the request.", "upstream_error")));
    }
    return out;
  };

  const body = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        for (;;) {
          let read: Awaited<ReturnType<ReadableStreamDefaultReader<Uint8Array>["read"]>>;
          let upstreamFailed = false;
          try {
            read = await reader.read();
          } catch {
            upstreamFailed = true;
            read = { done: true, value: undefined };
          }
          if (reported.finished) return; // the client went away meanwhile
          if (read.done) {
            for (const bytes of ending(upstreamFailed)) controller.enqueue(bytes);
            controller.close();
            const failed = tap.sawError || upstreamFailed || !tap.sawDone;
            reported.finish(outcome(failed ? "error" : "ok", failed ? "upstream_stream_error" : null));
            return;
          }
          firstByteAt ??= now();
          const out = tap.push(read.value);
          if (out) {
            controller.enqueue(out);
            return;
          }
        }
      },
      async cancel(reason) {
        // The client went away: stop the upstream (which stops the engine) and record what it got.
        reported.finish(outcome("cancelled", "client_cancelled"));
        await reader.cancel(reason).catch(() => {});
      },
    },
    { highWaterMark: 0 },
  );
  return { body, done: reported.done };
}
