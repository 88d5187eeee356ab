// The SSE tap as it was before it understood all SSE framing (LF only; it held events until a blank line), kept
// verbatim as the "before" row of bench/sse-tap.ts.
import { sseErrorEvent } from "../../worker/src/errors.ts";
import { parseUsage, type Usage } from "../../schema/contracts/usage-tap.ts";
import { outcomeOnce, type StreamOutcome } from "../../worker/src/proxy/usage.ts";

const LF = 10;
const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** Index just past the last complete SSE event (`\n\n`), or 0 when there is none. */
function lastEventEnd(bytes: Uint8Array): number {
  for (let i = bytes.length - 1; i > 0; i--) if (bytes[i] === LF && bytes[i - 1] === LF) return i + 1;
  return 0;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

interface TapState {
  pending: Uint8Array;
  usage: Usage | null;
  sawDone: boolean;
  sawError: boolean;
  firstByteAt: number | null;
  deliveredChunks: number;
}

/**
 * Looks at complete events, learns usage / errors / `[DONE]`, and returns the events to drop (only
 * the usage-only chunk, and only when the client did not ask for usage).
 */
function inspect(text: string, state: TapState, stripUsage: boolean): Set<number> | null {
  const events = text.split("\n\n");
  let drop: Set<number> | null = null;
  for (let i = 0; i < events.length; i++) {
    const event = events[i];
    if (!event) continue;
    const data = event.startsWith("data: ") ? event.slice(6) : event.startsWith("data:") ? event.slice(5) : null;
    if (data === null) continue;
    if (data === "[DONE]") {
      state.sawDone = true;
      continue;
    }
    if (data.startsWith('{"error"')) {
      state.sawError = true;
      continue;
    }
    if (!data.includes('"usage"')) {
      state.deliveredChunks++;
      continue;
    }
    let chunk: { choices?: unknown[]; usage?: unknown };
    try {
      chunk = JSON.parse(data) as { choices?: unknown[]; usage?: unknown };
    } catch {
      state.deliveredChunks++;
      continue;
    }
    const usage = parseUsage(chunk.usage);
    if (usage) state.usage = usage;
    const usageOnly = Array.isArray(chunk.choices) && chunk.choices.length === 0;
    if (usageOnly && stripUsage) (drop ??= new Set()).add(i);
    else if (!usageOnly) state.deliveredChunks++;
  }
  return drop;
}

function rebuild(text: string, drop: Set<number>): Uint8Array {
  const kept = text.split("\n\n").filter((_, i) => !drop.has(i));
  return encoder.encode(kept.join("\n\n"));
}

const EMPTY = new Uint8Array(0);

/**
 * Passes an SSE body through as it arrives, event by event, without re-encoding (bytes are
 * re-encoded only for the one event that carries the usage the client did not ask for). It learns
 * the usage of the stream, and if the upstream ends without `[DONE]` or fails, it ends the client's
 * stream with an in-band error event and `[DONE]` instead of truncating a 200 silently.
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
  const state: TapState = { pending: EMPTY, usage: null, sawDone: false, sawError: false, firstByteAt: null, deliveredChunks: 0 };
  const reader = source.getReader();
  const reported = outcomeOnce();
  const outcome = (status: StreamOutcome["status"], errorCode: string | null): StreamOutcome => ({
    status,
    usage: state.usage,
    firstByteAt: state.firstByteAt,
    deliveredChunks: state.deliveredChunks,
    errorCode,
  });

  /** The bytes to pass on for a chunk: its complete events (the rest waits for the next chunk). */
  const passOn = (chunk: Uint8Array): Uint8Array | null => {
    state.firstByteAt ??= now();
    const bytes = concat(state.pending, chunk);
    const end = lastEventEnd(bytes);
    state.pending = end === bytes.length ? EMPTY : bytes.slice(end);
    if (end === 0) return null;
    const complete = end === bytes.length ? bytes : bytes.subarray(0, end);
    const text = decoder.decode(complete);
    const drop = inspect(text, state, opts.stripUsage);
    return drop ? rebuild(text, drop) : complete;
  };

  /** What the client gets after the last chunk: the rest, and an error event unless the stream ended well. */
  const ending = (upstreamFailed: boolean): Uint8Array[] => {
    const out: Uint8Array[] = [];
    if (state.pending.length > 0) {
      const text = decoder.decode(state.pending);
      const drop = inspect(text, state, opts.stripUsage);
      out.push(drop ? rebuild(text, drop) : state.pending);
      state.pending = EMPTY;
    }
    if (state.sawDone && !upstreamFailed) return out;
    if (state.sawError) out.push(encoder.encode("data: [DONE]\n\n"));
    else {
      state.sawError = true;
      out.push(encoder.encode(sseErrorEvent("The GPU node stopped responding in the middle of the stream. Retry the request.", "upstream_error")));
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
            const failed = state.sawError || upstreamFailed || !state.sawDone;
            reported.finish(outcome(failed ? "error" : "ok", failed ? "upstream_stream_error" : null));
            return;
          }
          const out = passOn(read.value);
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
