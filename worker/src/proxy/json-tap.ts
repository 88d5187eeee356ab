import { parseUsage } from "../../../schema/contracts/usage-tap.ts";
import type { StreamOutcome } from "./usage.ts";

const TAIL_BYTES = 16 * 1024;
const decoder = new TextDecoder();
// The `usage` object of an OpenAI/vLLM response, allowing one level of nested objects
// (prompt_tokens_details, completion_tokens_details). vLLM serialises it last.
const USAGE_AT = /"usage"\s*:\s*(\{(?:[^{}]|\{[^{}]*\})*\})/y;

/**
 * Finds the last `usage` object in the tail of a JSON body. The search starts at the last `"usage"`
 * key that parses as one (a `"usage"` inside a string value is escaped as `\"usage\"`, so it never
 * matches), instead of running the pattern over the whole tail.
 */
export function usageFromTail(tail: string): ReturnType<typeof parseUsage> {
  let last: string | undefined;
  for (let at = tail.lastIndexOf('"usage"'); at !== -1 && last === undefined; at = at === 0 ? -1 : tail.lastIndexOf('"usage"', at - 1)) {
    USAGE_AT.lastIndex = at;
    last = USAGE_AT.exec(tail)?.[1];
  }
  if (last === undefined) return null;
  try {
    return parseUsage(JSON.parse(last));
  } catch {
    return null;
  }
}

/**
 * Reads a non-streamed JSON body whole (the runtime buffers it natively: no JS per chunk) and its
 * usage from the last 16 KB (or, when it is not there, the first: rerank answers put it first). An engine writes a non-streamed answer in one piece at the end, so
 * buffering it delays nothing, and a body that breaks off is answered as an error rather than sent
 * on as a truncated 200. `firstByteAt` is when the answer's headers came (`answeredAt`).
 */
export async function readJson(body: Pick<Body, "arrayBuffer">, answeredAt: number): Promise<{ bytes: Uint8Array | null; outcome: StreamOutcome }> {
  let bytes: Uint8Array;
  try {
    // The node's Response itself is read: wrapping its body in another Response cost a construction per request.
    bytes = new Uint8Array(await body.arrayBuffer());
  } catch {
    return { bytes: null, outcome: { status: "error", usage: null, firstByteAt: answeredAt, deliveredChunks: 0, errorCode: "upstream_stream_error" } };
  }
  const tail = bytes.length > TAIL_BYTES ? bytes.subarray(bytes.length - TAIL_BYTES) : bytes;
  // vLLM writes usage last, except in rerank answers, where it comes before the results: look at the head too.
  const usage = usageFromTail(decoder.decode(tail)) ?? (bytes.length > TAIL_BYTES ? usageFromTail(decoder.decode(bytes.subarray(0, TAIL_BYTES))) : null);
  return { bytes, outcome: { status: "ok", usage, firstByteAt: answeredAt, deliveredChunks: 0, errorCode: null } };
}
