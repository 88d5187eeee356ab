import { sseErrorEvent } from "../errors.ts";
import { UsageTap, type SseDialect } from "../../../schema/contracts/usage-tap.ts";
import { outcomeOnce, type StreamOutcome } from "./usage.ts";
import type { StreamCapture } from "../conversations/capture.ts";

/** What a client is told when its node's stream broke off. */
export const BROKEN_MESSAGE = "The GPU node stopped responding in the middle of the stream. Retry the request.";

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
  opts: {
    stripUsage: boolean;
    now?: () => number;
    dialect?: SseDialect;
    broken?: string;
    /** Conversation audit in `full` mode: every chunk read is also kept here (bounded, conversations/capture.ts). */
    capture?: StreamCapture;
  },
): {
  body: ReadableStream<Uint8Array>;
  done: Promise<StreamOutcome>;
  /** Content events delivered so far (read while the stream runs: reserved throughput, routing/reservation-usage.ts). */
  delivered: () => number;
} {
  const now = opts.now ?? Date.now;
  const tap = new UsageTap(opts.stripUsage, opts.dialect);
  let firstByteAt: number | null = null;
  const reader = source.getReader();
  const capture = opts.capture;
  const reported = outcomeOnce();
  const outcome = (status: StreamOutcome["status"], errorCode: string | null): StreamOutcome => ({
    status,
    usage: tap.usage,
    firstByteAt,
    deliveredChunks: tap.deliveredChunks,
    errorCode,
  });

  // The in-band event that ends a stream the node broke off (the OpenAI dialect's unless given).
  const broken = opts.broken ?? sseErrorEvent(BROKEN_MESSAGE, "upstream_error");

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
            for (const bytes of tap.ending(upstreamFailed, broken)) controller.enqueue(bytes);
            controller.close();
            const failed = tap.sawError || upstreamFailed || !tap.sawDone;
            reported.finish(outcome(failed ? "error" : "ok", failed ? "upstream_stream_error" : null));
            return;
          }
          firstByteAt ??= now();
          if (capture) capture.push(read.value);
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
  return { body, done: reported.done, delivered: () => tap.deliveredChunks };
}
