// Byte streams for the stream-tap tests: an upstream made of given chunks, and a reader of what came out.

const enc = new TextEncoder();
const dec = new TextDecoder();

/** An upstream body that yields `parts` one per read, then ends (or fails, as a reset connection). */
export function sourceOf(parts: (string | Uint8Array)[], opts: { failAtEnd?: boolean } = {}): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const part = parts[i++];
      if (part !== undefined) controller.enqueue(typeof part === "string" ? enc.encode(part) : part);
      else if (opts.failAtEnd) controller.error(new Error("connection reset"));
      else controller.close();
    },
  });
}

/** Everything a stream gives, as text. */
export async function textOf(stream: ReadableStream<Uint8Array>): Promise<string> {
  let out = "";
  const reader = stream.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return out;
    out += dec.decode(value);
  }
}
