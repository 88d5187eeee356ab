import { parseUsage, type StreamOutcome } from "./usage.ts";

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
 * usage from when it ends.
 */
export function tapJson(
  source: ReadableStream<Uint8Array>,
  opts: { now?: () => number } = {},
): { body: ReadableStream<Uint8Array>; done: Promise<StreamOutcome> } {
  const now = opts.now ?? Date.now;
  let tail = new Uint8Array(0);
  let firstByteAt: number | null = null;
  const tap = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      firstByteAt ??= now();
      controller.enqueue(chunk);
      if (chunk.length >= TAIL_BYTES) tail = chunk.slice(chunk.length - TAIL_BYTES);
      else {
        const joined = new Uint8Array(Math.min(TAIL_BYTES, tail.length + chunk.length));
        const keep = joined.length - chunk.length;
        joined.set(tail.subarray(tail.length - keep));
        joined.set(chunk, keep);
        tail = joined;
      }
    },
  });
  const done = source.pipeTo(tap.writable).then(
    (): StreamOutcome => {
      const usage = usageFromTail(decoder.decode(tail));
      return { status: "ok", usage, firstByteAt, deliveredChunks: 0, errorCode: null };
    },
    (): StreamOutcome => ({ status: "cancelled", usage: null, firstByteAt, deliveredChunks: 0, errorCode: "client_cancelled" }),
  );
  return { body: tap.readable, done };
}
