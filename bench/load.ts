/** What one load run sends. Plain data: it crosses into the load thread. */
export interface LoadSpec {
  url: string;
  headers: Record<string, string>;
  body: string;
  /** When given, request i sends bodies[i % bodies.length] instead of `body` (e.g. many prompt prefixes). */
  bodies?: string[];
  stream: boolean;
  requests: number;
  concurrency: number;
  /** A request still unfinished after this long is aborted and counted as an error. */
  requestTimeoutMs: number;
  /** No new request starts after this long, so a run is bounded in time as well as in count. */
  deadlineMs: number;
}

/** What one load run measured. Latencies and TTFTs are of successful requests only. */
export interface LoadResult {
  sent: number;
  latenciesMs: number[];
  ttftsMs: number[];
  /** Failed requests by kind ("HTTP 502", "timeout", "stream ended without [DONE]", …). */
  errors: Record<string, number>;
  wallMs: number;
  deadlineHit: boolean;
  /** CPU time of the thread that ran the load (the client's own cost). */
  clientCpuMs: number;
}

/** A request that completed but not as a client would accept. */
class BadResponse extends Error {}

interface Timing {
  latencyMs: number;
  ttftMs: number | null;
}

interface ChatBody {
  choices?: { message?: { content?: unknown } }[];
}

interface StreamChunk {
  error?: unknown;
  choices?: { delta?: { content?: unknown } }[];
}

function describeFailure(err: unknown): string {
  if (err instanceof BadResponse) return err.message;
  if (err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError")) return "timeout";
  if (err instanceof Error) {
    const code = err.cause instanceof Error && "code" in err.cause ? ` (${String(err.cause.code)})` : "";
    return `${err.message}${code}`;
  }
  return String(err);
}

/** Reads an SSE body as a client would: the first non-empty content delta is the first token. */
async function readStream(body: ReadableStream<Uint8Array>, startedAt: number): Promise<Timing> {
  let buffer = "";
  let ttftMs: number | null = null;
  let done = false;
  for await (const text of body.pipeThrough(new TextDecoderStream())) {
    buffer += text;
    for (let end = buffer.indexOf("\n\n"); end !== -1; end = buffer.indexOf("\n\n")) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (!event.startsWith("data: ")) continue;
      const data = event.slice(6);
      if (data === "[DONE]") {
        done = true;
        continue;
      }
      const chunk = JSON.parse(data) as StreamChunk;
      if (chunk.error !== undefined) throw new BadResponse("in-band error event");
      const content = chunk.choices?.[0]?.delta?.content;
      if (ttftMs === null && typeof content === "string" && content !== "") ttftMs = performance.now() - startedAt;
    }
  }
  if (!done) throw new BadResponse("stream ended without [DONE]");
  if (ttftMs === null) throw new BadResponse("stream had no content");
  return { latencyMs: performance.now() - startedAt, ttftMs };
}

async function sendOne(spec: LoadSpec, index: number): Promise<Timing> {
  const startedAt = performance.now();
  const res = await fetch(spec.url, {
    method: "POST",
    headers: { "content-type": "application/json", ...spec.headers },
    body: spec.bodies ? (spec.bodies[index % spec.bodies.length] ?? spec.body) : spec.body,
    signal: AbortSignal.timeout(spec.requestTimeoutMs),
  });
  if (res.status !== 200) {
    await res.arrayBuffer();
    throw new BadResponse(`HTTP ${res.status}`);
  }
  if (spec.stream) {
    if (!res.body) throw new BadResponse("empty body");
    return readStream(res.body, startedAt);
  }
  const parsed = (await res.json()) as ChatBody;
  const content = parsed.choices?.[0]?.message?.content;
  if (typeof content !== "string" || content === "") throw new BadResponse("no content in body");
  return { latencyMs: performance.now() - startedAt, ttftMs: null };
}

/**
 * Sends `spec.requests` requests with `spec.concurrency` in flight, over the global fetch (undici,
 * keep-alive), and times each one from just before `fetch` to the last byte read.
 */
export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const cpuBefore = process.threadCpuUsage();
  const startedAt = performance.now();
  const deadline = startedAt + spec.deadlineMs;
  const latenciesMs: number[] = [];
  const ttftsMs: number[] = [];
  const errors: Record<string, number> = {};
  let sent = 0;
  const lane = async () => {
    while (sent < spec.requests && performance.now() < deadline) {
      const index = sent++;
      try {
        const timing = await sendOne(spec, index);
        latenciesMs.push(timing.latencyMs);
        if (timing.ttftMs !== null) ttftsMs.push(timing.ttftMs);
      } catch (err) {
        const kind = describeFailure(err);
        errors[kind] = (errors[kind] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(spec.concurrency, spec.requests) }, lane));
  const wallMs = performance.now() - startedAt;
  const cpu = process.threadCpuUsage(cpuBefore);
  return { sent, latenciesMs, ttftsMs, errors, wallMs, deadlineHit: sent < spec.requests, clientCpuMs: (cpu.user + cpu.system) / 1000 };
}
