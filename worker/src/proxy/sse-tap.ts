import { sseErrorEvent } from "../errors.ts";
import { parseUsage, type StreamOutcome, type Usage } from "./usage.ts";

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

/**
 * Passes an SSE body through as it arrives, event by event, without re-encoding (bytes are
 * re-encoded only for the one event that carries the usage the client did not ask for). It learns
 * the usage of the stream, and if the upstream ends without `[DONE]` or fails, it ends the client's
 * stream with an in-band error event and `[DONE]` instead of truncating a 200 silently.
 */
export function tapSse(
  source: ReadableStream<Uint8Array>,
  opts: { stripUsage: boolean; now?: () => number },
): { body: ReadableStream<Uint8Array>; done: Promise<StreamOutcome> } {
  const now = opts.now ?? Date.now;
  const state: TapState = { pending: new Uint8Array(0), usage: null, sawDone: false, sawError: false, firstByteAt: null, deliveredChunks: 0 };
  let upstreamFailed = false;

  const tap = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      state.firstByteAt ??= now();
      const bytes = concat(state.pending, chunk);
      const end = lastEventEnd(bytes);
      state.pending = end === bytes.length ? new Uint8Array(0) : bytes.slice(end);
      if (end === 0) return;
      const complete = bytes.subarray(0, end);
      const text = decoder.decode(complete);
      const drop = inspect(text, state, opts.stripUsage);
      controller.enqueue(drop ? rebuild(text, drop) : complete);
    },
    flush(controller) {
      if (state.pending.length > 0) {
        const text = decoder.decode(state.pending);
        const drop = inspect(text, state, opts.stripUsage);
        controller.enqueue(drop ? rebuild(text, drop) : state.pending);
      }
      if (state.sawDone && !upstreamFailed) return;
      if (state.sawError) controller.enqueue(encoder.encode("data: [DONE]\n\n"));
      else {
        state.sawError = true;
        controller.enqueue(
          encoder.encode(sseErrorEvent("The GPU node stopped responding in the middle of the stream. Retry the request.", "upstream_error")),
        );
      }
    },
  });

  const done = source
    .pipeTo(tap.writable, { preventAbort: true, preventClose: true })
    .catch(() => {
      upstreamFailed = true;
    })
    .then(async (): Promise<StreamOutcome> => {
      const writer = tap.writable.getWriter();
      try {
        await writer.close();
      } catch {
        // The client went away: the readable side was cancelled and the writable errored.
        return { status: "cancelled", usage: state.usage, firstByteAt: state.firstByteAt, deliveredChunks: state.deliveredChunks, errorCode: "client_cancelled" };
      }
      const failed = state.sawError || upstreamFailed || !state.sawDone;
      return {
        status: failed ? "error" : "ok",
        usage: state.usage,
        firstByteAt: state.firstByteAt,
        deliveredChunks: state.deliveredChunks,
        errorCode: failed ? "upstream_stream_error" : null,
      };
    });
  return { body: tap.readable, done };
}
