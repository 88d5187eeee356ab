/**
 * A streamed request whose GPU node has not started answering within STREAM_KEEPALIVE_MS (a long
 * prefill, a queue) gets its 200 and an SSE comment every STREAM_KEEPALIVE_MS while it waits, as
 * OpenRouter does. Comments are ignored by every SSE client (WHATWG event-stream: lines starting with
 * ':'), and they do two jobs:
 *
 * - A client that gave up is noticed within about two intervals, by the failed write, even where the
 *   runtime cannot tell a client disconnect before the first byte (workerd locally; in production
 *   `request.signal` says so at once). The upstream request is then aborted, which frees the engine,
 *   the concurrency slot and the budget reservation.
 * - Proxies and load balancers that drop idle connections do not cut a stream during a long prefill.
 *
 * Failover still happens before the first byte of the answer; only when every node fails after the
 * 200 was sent does the client get the failure in-band (an error event and `[DONE]`) instead of a
 * 5xx status.
 */

const COMMENT = new TextEncoder().encode(": keep-alive\n\n");
const encoder = new TextEncoder();

/** What the keep-alive stream needs: the pending answer, and what to do on failure and cancel. */
export interface KeepAliveOptions {
  /** The tapped body of the node's answer, once forwarding succeeded. */
  answer: Promise<ReadableStream<Uint8Array>>;
  intervalMs: number;
  /** The in-band text that ends the stream when forwarding failed (an error event and `[DONE]`). */
  failure(err: unknown): string;
  /** The client went away: abort the upstream request (forwarding then fails, and releases what it held). */
  onCancel(): void;
}

/** The client's body for a stream committed before the node answered (see the file comment). */
export function keepAliveStream(opts: KeepAliveOptions): ReadableStream<Uint8Array> {
  let timer: ReturnType<typeof setInterval> | undefined;
  let reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
  let cancelled = false;
  const stop = () => {
    if (timer !== undefined) clearInterval(timer);
    timer = undefined;
  };
  // Settles with the reader of the answer, or null once the failure was written.
  let ready: Promise<ReadableStreamDefaultReader<Uint8Array> | null> = Promise.resolve(null);
  return new ReadableStream<Uint8Array>(
    {
      start(controller) {
        controller.enqueue(COMMENT);
        timer = setInterval(() => {
          try {
            controller.enqueue(COMMENT);
          } catch {
            stop(); // the stream was closed or cancelled meanwhile
          }
        }, opts.intervalMs);
        ready = opts.answer.then(
          (body) => {
            stop();
            if (cancelled) {
              void body.cancel().catch(() => undefined);
              return null;
            }
            reader = body.getReader();
            return reader;
          },
          (err: unknown) => {
            stop();
            if (!cancelled) {
              controller.enqueue(encoder.encode(opts.failure(err)));
              controller.close();
            }
            return null;
          },
        );
      },
      async pull(controller) {
        const current = await ready;
        if (current === null) return;
        const read = await current.read();
        if (read.done) controller.close();
        else controller.enqueue(read.value);
      },
      async cancel(reason) {
        cancelled = true;
        stop();
        opts.onCancel();
        if (reader) await reader.cancel(reason).catch(() => undefined);
      },
    },
    { highWaterMark: 0 },
  );
}
