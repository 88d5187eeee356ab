/**
 * The chaos scenarios' clients: concurrent callers of the official `openai` client sending chat
 * (streamed and not), completions and embeddings, each call recorded as the client saw it: its
 * request id (`x-request-id`), its outcome (ok, an HTTP error by status and code, a stream cut in
 * band, a connection error) and, when it succeeded, the usage the gateway returned.
 */
import OpenAI from "openai";

/** What a caller sends. */
export type CallKind = "chat" | "chat-stream" | "completion" | "embedding";

const ALL_KINDS: CallKind[] = ["chat-stream", "chat", "completion", "chat-stream", "embedding"];

/** One call as the client saw it. */
export interface ClientCall {
  kind: CallKind;
  startedAt: number;
  endedAt: number;
  /** The gateway's request id, when an answer (or an error answer) reached the client. */
  requestId: string | null;
  /**
   * `ok`; `HTTP <status> <code>` for an error answer; `stream cut: <code>` when a stream's 200 was
   * followed by the gateway's in-band error event; `stream truncated` when a stream ended without
   * its usage chunk or error event (what the gateway promises never to do); `connection error` or
   * `timeout` when no answer came.
   */
  outcome: string;
  /** Usage the client was given (ok calls). */
  usage: { prompt: number; completion: number } | null;
  /** Streams: chunks with content that reached the client. */
  contentChunks: number;
  /** Streams: chunks with a choice that reached the client, content or not (the opening role chunk too). */
  choiceChunks: number;
  /** The error's message, for the report. */
  detail?: string;
}

/** Traffic settings. */
export interface TrafficOptions {
  gatewayUrl: string;
  apiKey: string;
  /** Concurrent callers (default 3). */
  callers?: number;
  /** Each caller starts a call at most this often (default 1000 ms: 180 a minute for 3 callers, under the demo key's 300). */
  intervalMs?: number;
  kinds?: CallKind[];
  /** Output tokens per completion (default 24: a streamed answer runs about 0.4 s on the scenario engines). */
  maxTokens?: number;
  /** The client's own deadline per call (default 60 s). */
  timeoutMs?: number;
}

let sequence = 0;

/** Classifies an error the `openai` client threw. */
function classify(err: unknown, afterHeaders: boolean): { outcome: string; requestId: string | null } {
  if (err instanceof OpenAI.APIConnectionTimeoutError) return { outcome: "timeout", requestId: null };
  if (err instanceof OpenAI.APIConnectionError) return { outcome: "connection error", requestId: null };
  if (err instanceof OpenAI.APIError) {
    // instanceof leaves the class's type parameters as `any`; these are its defaults.
    const e = err as InstanceType<typeof OpenAI.APIError<number | undefined, Headers | undefined>>;
    const requestId = e.requestID ?? e.headers?.get("x-request-id") ?? null;
    const code = e.code ?? (typeof e.type === "string" ? e.type : "error");
    // An error event inside a 200 stream: the SDK throws an APIError without a status.
    if (e.status === undefined || afterHeaders) return { outcome: `stream cut: ${code}`, requestId };
    return { outcome: `HTTP ${e.status} ${code}`, requestId };
  }
  return { outcome: afterHeaders ? `stream broke: ${String(err).slice(0, 80)}` : `error: ${String(err).slice(0, 80)}`, requestId: null };
}

async function callOnce(client: OpenAI, kind: CallKind, maxTokens: number): Promise<ClientCall> {
  const startedAt = Date.now();
  const n = ++sequence;
  // A fresh prompt each time: an identical embeddings input would be served from the gateway's cache.
  const text = `chaos call ${n} at ${startedAt}`;
  const call: ClientCall = { kind, startedAt, endedAt: 0, requestId: null, outcome: "ok", usage: null, contentChunks: 0, choiceChunks: 0 };
  let afterHeaders = false;
  try {
    if (kind === "chat") {
      const { data, response } = await client.chat.completions.create({ model: "sim-llama-8b", messages: [{ role: "user", content: text }], max_tokens: maxTokens }).withResponse();
      call.requestId = response.headers.get("x-request-id");
      call.usage = data.usage ? { prompt: data.usage.prompt_tokens, completion: data.usage.completion_tokens } : null;
    } else if (kind === "completion") {
      const { data, response } = await client.completions.create({ model: "sim-llama-8b", prompt: text, max_tokens: maxTokens }).withResponse();
      call.requestId = response.headers.get("x-request-id");
      call.usage = data.usage ? { prompt: data.usage.prompt_tokens, completion: data.usage.completion_tokens } : null;
    } else if (kind === "embedding") {
      const { data, response } = await client.embeddings.create({ model: "sim-embed", input: [text] }).withResponse();
      call.requestId = response.headers.get("x-request-id");
      call.usage = { prompt: data.usage.prompt_tokens, completion: 0 };
    } else {
      const { data: stream, response } = await client.chat.completions
        .create({ model: "sim-llama-8b", messages: [{ role: "user", content: text }], max_tokens: maxTokens, stream: true, stream_options: { include_usage: true } })
        .withResponse();
      call.requestId = response.headers.get("x-request-id");
      afterHeaders = true;
      for await (const chunk of stream) {
        if (chunk.choices.length > 0) call.choiceChunks++;
        if (chunk.choices.some((c) => (c.delta.content ?? "") !== "")) call.contentChunks++;
        if (chunk.usage) call.usage = { prompt: chunk.usage.prompt_tokens, completion: chunk.usage.completion_tokens };
      }
      if (!call.usage) call.outcome = "stream truncated";
    }
    if (!call.usage) call.outcome = call.outcome === "ok" ? "ok without usage" : call.outcome;
  } catch (err) {
    const { outcome, requestId } = classify(err, afterHeaders);
    call.outcome = outcome;
    call.requestId ??= requestId;
    call.detail = (err instanceof Error ? err.message : String(err)).slice(0, 200);
    call.usage = null;
  }
  call.endedAt = Date.now();
  return call;
}

/** Callers sending traffic from `start()` until `stop()`; `calls` holds every finished call. */
export class Traffic {
  readonly calls: ClientCall[] = [];
  private readonly client: OpenAI;
  private readonly opts: Required<Omit<TrafficOptions, "gatewayUrl" | "apiKey">>;
  private stopped = false;
  private loops: Promise<void>[] = [];

  constructor(opts: TrafficOptions) {
    this.opts = { callers: 3, intervalMs: 1_000, kinds: ALL_KINDS, maxTokens: 24, timeoutMs: 60_000, ...opts };
    this.client = new OpenAI({ baseURL: `${opts.gatewayUrl}/v1`, apiKey: opts.apiKey, maxRetries: 0, timeout: this.opts.timeoutMs });
  }

  /** Starts the callers (each on its own offset in the mix of kinds). */
  start(): this {
    this.loops = Array.from({ length: this.opts.callers }, (_, i) => this.loop(i));
    return this;
  }

  private async loop(caller: number): Promise<void> {
    const { kinds, intervalMs, maxTokens } = this.opts;
    // Spread the callers over the interval rather than all at once.
    await new Promise((r) => setTimeout(r, (intervalMs / this.opts.callers) * caller));
    for (let i = caller; !this.stopped; i++) {
      const started = Date.now();
      const kind = kinds[i % kinds.length] ?? "chat";
      this.calls.push(await callOnce(this.client, kind, maxTokens));
      await new Promise((r) => setTimeout(r, Math.max(0, started + intervalMs - Date.now())));
    }
  }

  /** Stops starting calls and waits for the ones under way. */
  async stop(): Promise<ClientCall[]> {
    this.stopped = true;
    await Promise.all(this.loops);
    return this.calls;
  }
}

/** Counts calls by outcome, then kind: `{ ok: { chat: 10, … }, "HTTP 503 dependency_unavailable": { … } }`. */
export function outcomes(calls: ClientCall[]): Record<string, Record<string, number>> {
  const result: Record<string, Record<string, number>> = {};
  for (const call of calls) {
    const byKind = (result[call.outcome] ??= {});
    byKind[call.kind] = (byKind[call.kind] ?? 0) + 1;
  }
  return result;
}

/** The calls started in [from, to) (unix ms). */
export function startedBetween(calls: ClientCall[], from: number, to: number): ClientCall[] {
  return calls.filter((c) => c.startedAt >= from && c.startedAt < to);
}
