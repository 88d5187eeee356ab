/**
 * The response cache's entries (docs/caching.md): one canonical answer per deterministic chat or
 * completions request, whether it was first served streamed or not. An entry keeps the engine's
 * non-streamed body (assembled from the chunks when it came from a stream) and, when it came from a
 * stream, the stream's chunks as the engine wrote them, so a streamed hit replays the very chunks a
 * live stream had; a streamed hit of an entry first cached from a JSON answer gets vLLM's stream
 * shape built from it (a role chunk per choice, then each choice's text in one chunk). Only complete,
 * successful answers make entries: every choice finished with `stop` or `length`, usage known.
 */

type Json = Record<string, unknown>;

/** A cacheable endpoint's answer kind. */
export type AnswerEndpoint = "chat" | "completions";

/** A cached answer as stored (JSON in Redis). */
export interface CachedAnswer {
  v: 1;
  endpoint: AnswerEndpoint;
  /** The non-streamed answer. */
  body: Json;
  /** The stream's chunks (JSON text, without the usage chunk and `[DONE]`), when it was first served as a stream. */
  chunks?: string[];
  /** The usage chunk as the engine wrote it (the stream was always asked for it). */
  usageChunk?: string;
  promptTokens: number;
  completionTokens: number;
}

const FINISHED = new Set(["stop", "length"]);
const decoder = new TextDecoder();
const encoder = new TextEncoder();

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** prompt and completion tokens of an engine usage object, or null. */
function tokensOf(usage: unknown): { promptTokens: number; completionTokens: number } | null {
  if (!isObject(usage) || typeof usage.prompt_tokens !== "number") return null;
  return { promptTokens: usage.prompt_tokens, completionTokens: typeof usage.completion_tokens === "number" ? usage.completion_tokens : 0 };
}

/** The entry for a non-streamed answer (HTTP 200 already checked), or null when it is not complete and successful. */
export function answerFromJson(endpoint: AnswerEndpoint, bytes: Uint8Array): CachedAnswer | null {
  let body: unknown;
  try {
    body = JSON.parse(decoder.decode(bytes));
  } catch {
    return null;
  }
  if (!isObject(body) || !Array.isArray(body.choices) || body.choices.length === 0) return null;
  if (!body.choices.every((c: unknown) => isObject(c) && typeof c.finish_reason === "string" && FINISHED.has(c.finish_reason))) return null;
  // A tool call is an action: never replayed (policy.ts lets only tool_choice "none" through; this is the backstop).
  if (endpoint === "chat" && body.choices.some((c: Json) => isObject(c.message) && Array.isArray(c.message.tool_calls) && c.message.tool_calls.length > 0)) return null;
  const tokens = tokensOf(body.usage);
  if (!tokens) return null;
  return { v: 1, endpoint, body, ...tokens };
}

interface Assembled {
  role: string;
  content: string | null;
  reasoning: string | null;
  finishReason: string | null;
  stopReason: unknown;
}

/**
 * The entry for a stream that ended (its SSE `data:` payloads joined by newlines, as StreamCapture
 * keeps them), or null when it did not end with `[DONE]` after every choice finished, carried an
 * error or a tool call, or had no usage.
 */
export function answerFromStream(endpoint: AnswerEndpoint, payloads: string): CachedAnswer | null {
  const lines = payloads.split("\n");
  if (lines[lines.length - 1] !== "[DONE]") return null;
  const chunks: string[] = [];
  let usageChunk: string | null = null;
  let usage: { promptTokens: number; completionTokens: number } | null = null;
  let head: Json | null = null;
  const choices = new Map<number, Assembled>();
  for (const line of lines.slice(0, -1)) {
    let chunk: unknown;
    try {
      chunk = JSON.parse(line);
    } catch {
      return null;
    }
    if (!isObject(chunk) || "error" in chunk || !Array.isArray(chunk.choices)) return null;
    head ??= chunk;
    if (chunk.choices.length === 0) {
      usage = tokensOf(chunk.usage);
      usageChunk = line;
      continue;
    }
    chunks.push(line);
    for (const choice of chunk.choices as unknown[]) {
      if (!isObject(choice) || typeof choice.index !== "number") return null;
      const a = choices.get(choice.index) ?? { role: "assistant", content: null, reasoning: null, finishReason: null, stopReason: null };
      const delta = endpoint === "chat" ? choice.delta : { content: choice.text };
      if (isObject(delta)) {
        if (Array.isArray(delta.tool_calls) && delta.tool_calls.length > 0) return null;
        if (typeof delta.role === "string") a.role = delta.role;
        if (typeof delta.content === "string") a.content = (a.content ?? "") + delta.content;
        if (typeof delta.reasoning_content === "string") a.reasoning = (a.reasoning ?? "") + delta.reasoning_content;
      }
      if (typeof choice.finish_reason === "string") {
        a.finishReason = choice.finish_reason;
        a.stopReason = choice.stop_reason ?? null;
      }
      choices.set(choice.index, a);
    }
  }
  if (!head || !usage || usageChunk === null || choices.size === 0) return null;
  const ordered = [...choices.entries()].sort((x, y) => x[0] - y[0]);
  if (!ordered.every(([, a]) => a.finishReason !== null && FINISHED.has(a.finishReason))) return null;
  const usageBody = JSON.parse(usageChunk) as Json;
  const body: Json =
    endpoint === "chat"
      ? {
          id: head.id,
          object: "chat.completion",
          created: head.created,
          model: head.model,
          choices: ordered.map(([index, a]) => ({
            index,
            message: { role: a.role, content: a.content ?? (a.reasoning === null ? "" : null), refusal: null, annotations: null, audio: null, function_call: null, tool_calls: [], reasoning_content: a.reasoning },
            logprobs: null,
            finish_reason: a.finishReason,
            stop_reason: a.stopReason,
          })),
          usage: usageBody.usage,
        }
      : {
          id: head.id,
          object: "text_completion",
          created: head.created,
          model: head.model,
          choices: ordered.map(([index, a]) => ({ index, text: a.content ?? "", logprobs: null, finish_reason: a.finishReason, stop_reason: a.stopReason, prompt_logprobs: null })),
          usage: usageBody.usage,
        };
  return { v: 1, endpoint, body, chunks, usageChunk, ...usage };
}

/** A stored value read back: null unless it has the entry's shape. */
export function asCachedAnswer(value: unknown, endpoint: AnswerEndpoint): CachedAnswer | null {
  if (!isObject(value) || value.v !== 1 || value.endpoint !== endpoint || !isObject(value.body)) return null;
  if (typeof value.promptTokens !== "number" || typeof value.completionTokens !== "number") return null;
  return value as unknown as CachedAnswer;
}

/** The id a replayed answer carries: the engine's form (`chatcmpl-`/`cmpl-` and the request id), for this request. */
function replayId(endpoint: AnswerEndpoint, requestId: string): string {
  return `${endpoint === "chat" ? "chatcmpl" : "cmpl"}-${requestId}`;
}

/** The JSON answer of a hit: the cached body with this request's id and time. */
export function replayJson(entry: CachedAnswer, requestId: string, now = Date.now()): Uint8Array {
  return encoder.encode(JSON.stringify({ ...entry.body, id: replayId(entry.endpoint, requestId), created: Math.floor(now / 1000) }));
}

/** One chunk with this request's id and time, the rest as cached. */
function restamp(chunk: Json, id: string, created: number): string {
  return JSON.stringify({ ...chunk, id, created });
}

/**
 * The SSE events of a streamed hit: the cached chunks (or, for an entry first cached from a JSON
 * answer, vLLM's shape built from it), the usage chunk only when the client asked for it
 * (`stream_options.include_usage`), then `data: [DONE]`.
 */
export function replayEvents(entry: CachedAnswer, requestId: string, includeUsage: boolean, now = Date.now()): string[] {
  const id = replayId(entry.endpoint, requestId);
  const created = Math.floor(now / 1000);
  const chunks = entry.chunks ? entry.chunks.map((text) => JSON.parse(text) as Json) : synthesize(entry);
  const events = chunks.map((chunk) => `data: ${restamp(chunk, id, created)}\n\n`);
  if (includeUsage) {
    const usage = entry.usageChunk ? (JSON.parse(entry.usageChunk) as Json) : { object: chunkObject(entry.endpoint), model: entry.body.model, choices: [], usage: entry.body.usage };
    events.push(`data: ${restamp(usage, id, created)}\n\n`);
  }
  events.push("data: [DONE]\n\n");
  return events;
}

function chunkObject(endpoint: AnswerEndpoint): string {
  return endpoint === "chat" ? "chat.completion.chunk" : "text_completion";
}

/** vLLM's chunks for a JSON answer: chat has a role chunk per choice, then reasoning and content in one chunk each. */
function synthesize(entry: CachedAnswer): Json[] {
  const base = { id: "", object: chunkObject(entry.endpoint), created: 0, model: entry.body.model };
  const choices = Array.isArray(entry.body.choices) ? (entry.body.choices as Json[]) : [];
  const out: Json[] = [];
  if (entry.endpoint === "completions") {
    for (const c of choices) out.push({ ...base, choices: [{ index: c.index, text: c.text, logprobs: null, finish_reason: c.finish_reason, stop_reason: c.stop_reason ?? null }], usage: null });
    return out;
  }
  for (const c of choices) out.push({ ...base, choices: [{ index: c.index, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }] });
  for (const c of choices) {
    const message = isObject(c.message) ? c.message : {};
    if (typeof message.reasoning_content === "string") out.push({ ...base, choices: [{ index: c.index, delta: { reasoning_content: message.reasoning_content }, logprobs: null, finish_reason: null }] });
    out.push({ ...base, choices: [{ index: c.index, delta: { content: typeof message.content === "string" ? message.content : "" }, logprobs: null, finish_reason: c.finish_reason, stop_reason: c.stop_reason ?? null }] });
  }
  return out;
}

/** A streamed hit's body: each event its own chunk, all available at once. */
export function eventStream(events: string[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const next = events[i++];
      if (next === undefined) controller.close();
      else controller.enqueue(encoder.encode(next));
    },
  });
}
