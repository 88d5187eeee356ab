/**
 * Ollama's model management API (ollama/ollama docs/api.md): list, show, pull, delete. Errors are
 * `{"error":"…"}` with a status; during a pull stream they arrive as a last NDJSON line instead,
 * because the 200 is already sent.
 */

/** A non-2xx answer from Ollama, with its status and the `error` text. */
export class OllamaError extends Error {
  override name = "OllamaError";
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** One entry of `GET /api/tags`. */
export interface OllamaModel {
  name: string;
  model?: string;
  modified_at?: string;
  size?: number;
  digest?: string;
  details?: Record<string, unknown>;
}

/** `POST /api/show`: modelfile, parameters, template, details, model_info (`<arch>.context_length`…), capabilities. */
export type OllamaShow = Record<string, unknown> & {
  details?: Record<string, unknown>;
  model_info?: Record<string, unknown>;
  capabilities?: string[];
};

/** One NDJSON line of `POST /api/pull`: progress (`status`, maybe `digest/total/completed`) or `error`. */
export interface PullProgress {
  status?: string;
  digest?: string;
  total?: number;
  completed?: number;
  error?: string;
}

/** Outcome of a delete: a missing model is an expected answer, not an exception. */
export type RemoveResult = { removed: true } | { removed: false; reason: "not_found"; message: string };

/** Client for one Ollama server's model management. */
export interface OllamaClient {
  /** Models on disk. */
  list(signal?: AbortSignal): Promise<OllamaModel[]>;
  /** Model details; an unknown model throws OllamaError 404. */
  show(model: string, signal?: AbortSignal): Promise<OllamaShow>;
  /**
   * Starts a pull and yields its progress lines. The last item is always either `{status:"success"}`
   * or `{error}`: an error line from Ollama, or one made up when the stream broke or ended early.
   * A refused start (non-2xx) throws OllamaError before anything is yielded.
   */
  pull(model: string, signal?: AbortSignal): Promise<AsyncIterable<PullProgress>>;
  /** Pulls with `stream:false` and returns Ollama's single final object. */
  pullToEnd(model: string, signal?: AbortSignal): Promise<PullProgress>;
  /** Deletes a model; 404 is `{removed:false, reason:"not_found"}`. */
  remove(model: string, signal?: AbortSignal): Promise<RemoveResult>;
}

async function errorOf(res: Response): Promise<OllamaError> {
  const text = await res.text().catch(() => "");
  try {
    const body = JSON.parse(text) as { error?: unknown };
    if (typeof body.error === "string") return new OllamaError(res.status, body.error);
  } catch {
    // Not JSON (a proxy's error page, say): fall through to the raw text.
  }
  return new OllamaError(res.status, text.trim() || `Ollama answered ${res.status}`);
}

function parseLine(line: string): PullProgress {
  try {
    const value = JSON.parse(line) as unknown;
    if (typeof value === "object" && value !== null) return value;
  } catch {
    // fall through
  }
  return { error: `unreadable pull progress line: ${line.slice(0, 200)}` };
}

async function* progressLines(body: ReadableStream<Uint8Array>): AsyncGenerator<PullProgress> {
  const decoder = new TextDecoder();
  let buffer = "";
  let last: PullProgress | null = null;
  try {
    for await (const chunk of body) {
      buffer += decoder.decode(chunk, { stream: true });
      for (let nl = buffer.indexOf("\n"); nl !== -1; nl = buffer.indexOf("\n")) {
        const line = buffer.slice(0, nl).trim();
        buffer = buffer.slice(nl + 1);
        if (line === "") continue;
        last = parseLine(line);
        yield last;
        if (last.error !== undefined) return;
      }
    }
    buffer += decoder.decode();
    if (buffer.trim() !== "") {
      last = parseLine(buffer.trim());
      yield last;
      if (last.error !== undefined) return;
    }
  } catch (err) {
    const reason = err instanceof Error ? (err.cause instanceof Error ? `${err.message}: ${err.cause.message}` : err.message) : String(err);
    yield { error: `pull stream broke: ${reason}` };
    return;
  }
  if (last?.status !== "success") yield { error: "pull stream ended before success" };
}

/** A client for the Ollama server at `baseUrl` (no trailing slash). `timeoutMs` bounds every call except a streamed pull. */
export function createOllamaClient(baseUrl: string, opts: { timeoutMs?: number } = {}): OllamaClient {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const bounded = (signal: AbortSignal | undefined) =>
    signal === undefined ? AbortSignal.timeout(timeoutMs) : AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]);
  const send = (method: string, path: string, body: unknown, signal: AbortSignal | undefined) =>
    fetch(`${baseUrl}${path}`, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? null : JSON.stringify(body),
      signal: signal ?? null,
    });

  return {
    async list(signal) {
      const res = await send("GET", "/api/tags", undefined, bounded(signal));
      if (!res.ok) throw await errorOf(res);
      const body = (await res.json()) as { models?: unknown };
      return Array.isArray(body.models) ? (body.models as OllamaModel[]) : [];
    },
    async show(model, signal) {
      const res = await send("POST", "/api/show", { model }, bounded(signal));
      if (!res.ok) throw await errorOf(res);
      return (await res.json()) as OllamaShow;
    },
    async pull(model, signal) {
      const res = await send("POST", "/api/pull", { model, stream: true }, signal);
      if (!res.ok) throw await errorOf(res);
      if (res.body === null) throw new OllamaError(res.status, "pull answered without a body");
      return progressLines(res.body);
    },
    async pullToEnd(model, signal) {
      const res = await send("POST", "/api/pull", { model, stream: false }, signal);
      if (!res.ok) throw await errorOf(res);
      return (await res.json()) as PullProgress;
    },
    async remove(model, signal) {
      const res = await send("DELETE", "/api/delete", { model }, bounded(signal));
      if (res.status === 404) return { removed: false, reason: "not_found", message: (await errorOf(res)).message };
      if (!res.ok) throw await errorOf(res);
      await res.body?.cancel();
      return { removed: true };
    },
  };
}
