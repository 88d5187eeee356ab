// An incremental parser for `text/event-stream`, following the WHATWG HTML "event stream
// interpretation" rules: CRLF, CR and LF line ends (also a CR ending one chunk and its LF starting
// the next), comments (`:`), `data`/`event`/`id`/`retry` fields, a field without a colon, one
// optional space after the colon, multi-line `data` joined with LF, and one leading UTF-8 BOM.
// It works on bytes so that a caller can cut the stream at exact event boundaries, and decodes only
// the values it keeps (a line is decoded once it is complete, so a multibyte character split across
// chunks decodes whole).

const LF = 10;
const CR = 13;
const COLON = 58;
const SPACE = 32;
const DATA = [100, 97, 116, 97];
const EVENT = [101, 118, 101, 110, 116];
const ID = [105, 100];
const RETRY = [114, 101, 116, 114, 121];

/** The longest line, and the most `data` per event, the parser keeps; longer ones mark the event oversized. */
export const MAX_LINE_BYTES = 32 * 1024;

const decoder = new TextDecoder();

/** One dispatched event. */
export interface SseEvent {
  /** The `data` lines joined with LF; empty when the event was oversized. */
  data: string;
  /** The `event` field, `message` when absent. */
  type: string;
  /** The last event ID seen so far in the stream. */
  id: string;
  /** A data line or the data passed MAX_LINE_BYTES: `data` was not kept. */
  oversized: boolean;
}

/** Receives the blank lines that end blocks of lines, with the event they dispatch. */
export interface SseSink {
  /**
   * A blank line ended the current block. `end` is the index in the chunk being pushed just past the
   * blank line's terminator (0 from `finish`); `event` is null when the block dispatched none
   * (comments only, or no `data`). The event object is reused: read it during the call only.
   */
  blockEnd(end: number, event: SseEvent | null): void;
  /** A comment line of the current block: its text is line[start, stop), after the colon. Optional. */
  comment?(line: Uint8Array, start: number, stop: number): void;
}

function fieldIs(line: Uint8Array, start: number, end: number, name: number[]): boolean {
  if (end - start !== name.length) return false;
  for (let i = 0; i < name.length; i++) if (line[start + i] !== name[i]) return false;
  return true;
}

/** Feeds chunks of an event stream in order and reports each blank line with the event it dispatches. */
export class SseParser {
  private line = new Uint8Array(256);
  private lineLength = 0;
  private lineOversized = false;
  private pendingLF = false;
  private atStart = true;
  private data: string | null = null;
  private type = "";
  private oversized = false;
  // One event object, refilled for each dispatch (a sink must not keep it past its call).
  private readonly event: SseEvent = { data: "", type: "message", id: "", oversized: false };
  /** The `id` field's value, kept across events as the spec says. */
  lastEventId = "";
  /** The last valid `retry` field, in milliseconds. */
  retry: number | null = null;
  /** Some bytes arrived since the last blank line (the stream is in the middle of a block). */
  inBlock = false;

  /** True when the last chunk ended with a CR: an LF starting the next chunk belongs to that line end. */
  get awaitingLF(): boolean {
    return this.pendingLF;
  }

  /** Parses one chunk, calling `sink.blockEnd` at each blank line. */
  push(chunk: Uint8Array, sink: SseSink): void {
    const n = chunk.length;
    if (n === 0) return;
    let i = 0;
    if (this.pendingLF) {
      this.pendingLF = false;
      if (chunk[0] === LF) i = 1;
    }
    let nextLF = chunk.indexOf(LF, i);
    let nextCR = chunk.indexOf(CR, i);
    while (i < n) {
      if (nextLF !== -1 && nextLF < i) nextLF = chunk.indexOf(LF, i);
      if (nextCR !== -1 && nextCR < i) nextCR = chunk.indexOf(CR, i);
      const eol = nextLF === -1 ? nextCR : nextCR === -1 ? nextLF : Math.min(nextLF, nextCR);
      if (eol === -1) {
        this.keep(chunk, i, n);
        this.inBlock = true;
        return;
      }
      let end = eol + 1;
      if (chunk[eol] === CR) {
        if (end === n) this.pendingLF = true;
        else if (chunk[end] === LF) end++;
      }
      if (this.lineLength > 0 || this.lineOversized) {
        this.keep(chunk, i, eol);
        this.endLine(this.line, 0, this.lineLength, end, sink);
      } else this.endLine(chunk, i, eol, end, sink);
      i = end;
    }
  }

  /** The stream ended: an unterminated last line and block are taken as complete (see usage-tap.ts). */
  finish(sink: SseSink): void {
    this.pendingLF = false;
    if (this.lineLength > 0 || this.lineOversized) this.endLine(this.line, 0, this.lineLength, 0, sink);
    if (this.inBlock) this.endLine(this.line, 0, 0, 0, sink);
  }

  /**
   * The event's `data` so far, including a `data` line still arriving (its end may be cut inside a
   * character); null when the block has no `data` yet.
   */
  peekData(): string | null {
    const line = this.line.subarray(0, this.lineLength);
    const start = this.atStart && line[0] === 0xef && line[1] === 0xbb && line[2] === 0xbf ? 3 : 0;
    const partial = this.lineLength - start >= 5 && fieldIs(line, start, start + 4, DATA) && line[start + 4] === COLON;
    if (!partial) return this.data;
    const value = decoder.decode(line.subarray(start + (line[start + 5] === SPACE ? 6 : 5)));
    return this.data === null ? value : `${this.data}\n${value}`;
  }

  /** Appends chunk[from, to) to the line kept from earlier chunks, up to MAX_LINE_BYTES. */
  private keep(chunk: Uint8Array, from: number, to: number): void {
    if (this.lineOversized) return;
    const length = this.lineLength + to - from;
    if (length > MAX_LINE_BYTES) {
      // Keep the head: it names the field, which says whether the event's data was lost.
      this.lineOversized = true;
      to = from + MAX_LINE_BYTES - this.lineLength;
    }
    if (this.lineLength + to - from > this.line.length) {
      const grown = new Uint8Array(Math.min(MAX_LINE_BYTES, Math.max(2 * this.line.length, this.lineLength + to - from)));
      grown.set(this.line.subarray(0, this.lineLength));
      this.line = grown;
    }
    this.line.set(chunk.subarray(from, to), this.lineLength);
    this.lineLength += to - from;
  }

  /** Interprets the line line[start, stop); `end` is where its terminator ends in the chunk. */
  private endLine(line: Uint8Array, start: number, stop: number, end: number, sink: SseSink): void {
    const oversized = this.lineOversized;
    this.lineLength = 0;
    this.lineOversized = false;
    if (this.atStart) {
      this.atStart = false;
      // The UTF-8 decode step of the spec drops one leading BOM.
      if (stop - start >= 3 && line[start] === 0xef && line[start + 1] === 0xbb && line[start + 2] === 0xbf) start += 3;
    }
    if (start === stop && !oversized) {
      this.inBlock = false;
      sink.blockEnd(end, this.dispatch());
      return;
    }
    this.inBlock = true;
    if (line[start] === COLON) {
      if (sink.comment && !oversized) sink.comment(line, start + 1, stop);
      return;
    }
    // A loop, not indexOf: indexOf would scan past the line to the end of the chunk when it has no colon.
    let colon = start;
    while (colon < stop && line[colon] !== COLON) colon++;
    let valueStart = colon === stop ? stop : colon + 1;
    if (valueStart < stop && line[valueStart] === SPACE) valueStart++;
    if (fieldIs(line, start, colon, DATA)) {
      if (oversized || this.oversized) {
        this.oversized = true;
        this.data = "";
        return;
      }
      const value = valueStart === stop ? "" : decoder.decode(line.subarray(valueStart, stop));
      this.data = this.data === null ? value : `${this.data}\n${value}`;
      if (this.data.length > MAX_LINE_BYTES) {
        this.oversized = true;
        this.data = "";
      }
    } else if (oversized) return; // a field that long is not one this parser needs
    else if (fieldIs(line, start, colon, EVENT)) this.type = decoder.decode(line.subarray(valueStart, stop));
    else if (fieldIs(line, start, colon, ID)) {
      let nul = valueStart;
      while (nul < stop && line[nul] !== 0) nul++;
      if (nul === stop) this.lastEventId = decoder.decode(line.subarray(valueStart, stop));
    } else if (fieldIs(line, start, colon, RETRY)) {
      let digits = valueStart < stop;
      for (let i = valueStart; i < stop && digits; i++) digits = (line[i] ?? 0) >= 48 && (line[i] ?? 0) <= 57;
      if (digits) this.retry = Number(decoder.decode(line.subarray(valueStart, stop)));
    }
    // Any other field is ignored, as the spec says.
  }

  private dispatch(): SseEvent | null {
    const data = this.data;
    const event = this.event;
    event.type = this.type === "" ? "message" : this.type;
    event.oversized = this.oversized;
    this.data = null;
    this.type = "";
    this.oversized = false;
    if (data === null) return null;
    event.data = data;
    event.id = this.lastEventId;
    return event;
  }
}
