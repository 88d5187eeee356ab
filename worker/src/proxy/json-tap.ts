import { outcomeOnce, parseUsage, type StreamOutcome } from "./usage.ts";

const TAIL_BYTES = 16 * 1024;
const decoder = new TextDecoder();
// The `usage` object of an OpenAI/vLLM response, allowing one level of nested objects
// (prompt_tokens_details, completion_tokens_details). vLLM serialises it last.
const USAGE_PATTERN = /"usage"\s*:\s*(\{(?:[^{}]|\{[^{}]*\})*\})/g;

/** Finds the last `usage` object in the tail of a JSON body. */
export function usageFromTail(tail: string): ReturnType<typeof parseUsage> {
  let last: string | undefined;
  for (const match of tail.matchAll(USAGE_PATTERN)) last = match[1];
  if (last === undefined) return null;
  try {
    return parseUsage(JSON.parse(last));
  } catch {
    return null;
  }
}

/**
 * Passes a non-streamed JSON body through unchanged, keeping only its last 16 KB to read the
 * usage from when it ends. Pull-based like the SSE tap (sse-tap.ts): one read and one enqueue per
 * chunk, nothing read ahead of the client.
 */
export function tapJson(
  source: ReadableStream<Uint8Array>,
  opts: { now?: () => number } = {},
): { body: ReadableStream<Uint8Array>; done: Promise<StreamOutcome> } {
  const now = opts.now ?? Date.now;
  let tail = new Uint8Array(0);
  let firstByteAt: number | null = null;
  const reader = source.getReader();
  const reported = outcomeOnce();
  const keepTail = (chunk: Uint8Array) => {
    if (chunk.length >= TAIL_BYTES) tail = chunk.slice(chunk.length - TAIL_BYTES);
    else {
      const joined = new Uint8Array(Math.min(TAIL_BYTES, tail.length + chunk.length));
      const keep = joined.length - chunk.length;
      joined.set(tail.subarray(tail.length - keep));
      joined.set(chunk, keep);
      tail = joined;
    }
  };
  const body = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let read: ReadableStreamReadResult<Uint8Array>;
        try {
          read = await reader.read();
        } catch (err) {
          // The upstream broke: the client sees the error (a truncated JSON body is never a 200 success).
          reported.finish({ status: "error", usage: null, firstByteAt, deliveredChunks: 0, errorCode: "upstream_stream_error" });
          controller.error(err);
          return;
        }
        if (reported.finished) return;
        if (read.done) {
          controller.close();
          reported.finish({ status: "ok", usage: usageFromTail(decoder.decode(tail)), firstByteAt, deliveredChunks: 0, errorCode: null });
          return;
        }
        firstByteAt ??= now();
        keepTail(read.value);
        controller.enqueue(read.value);
      },
      async cancel(reason) {
        reported.finish({ status: "cancelled", usage: null, firstByteAt, deliveredChunks: 0, errorCode: "client_cancelled" });
        await reader.cancel(reason).catch(() => {});
      },
    },
    { highWaterMark: 0 },
  );
  return { body, done: reported.done };
}
