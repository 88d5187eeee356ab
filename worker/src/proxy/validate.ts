import { ApiError } from "../errors.ts";
import { fnv1a } from "../routing/strategies.ts";

/** The inference endpoints the gateway proxies: OpenAI's, and Anthropic's Messages (anthropic/validate.ts). */
export type Endpoint =
  | "chat"
  | "completions"
  | "embeddings"
  | "messages"
  | "count_tokens"
  | "responses"
  | "rerank"
  | "score"
  | "tokenize"
  | "detokenize"
  | "transcriptions"
  | "translations";

/**
 * What an endpoint costs the GPU: `generate` runs up to its output limit per sequence; `pool` reads
 * its input once (embeddings, rerank, score: bounded by the body's bytes); `free` only tokenizes
 * (counting, tokenize, detokenize: no tokens, no spend); `audio` hears its upload in 30-second chunks,
 * each generating up to the context (transcriptions, translations: priced by audio duration too).
 */
export function costClass(endpoint: Endpoint): "generate" | "pool" | "free" | "audio" {
  if (endpoint === "embeddings" || endpoint === "rerank" || endpoint === "score") return "pool";
  if (endpoint === "transcriptions" || endpoint === "translations") return "audio";
  if (endpoint === "count_tokens" || endpoint === "tokenize" || endpoint === "detokenize") return "free";
  return "generate";
}

/** The OpenAI endpoints, validated here. */
export type OpenAIEndpoint = "chat" | "completions" | "embeddings";

/** A validated request, ready to forward. */
export interface ProxyRequest {
  endpoint: Endpoint;
  model: string;
  stream: boolean;
  /** Whether the client itself asked for the usage chunk (`stream_options.include_usage: true`). */
  clientWantsUsage: boolean;
  /** The body to send upstream (the client's, with `stream_options.include_usage` forced on for streams). */
  upstreamBody: string | Uint8Array<ArrayBuffer>;
  /** The upstream body's content type when it is not JSON (an audio upload's multipart boundary). */
  upstreamContentType?: string;
  /** Milliseconds of audio in an upload (audio/validate.ts), priced and billed by duration. */
  audioMs?: number;
  /** How much the engine may generate, as vLLM will run the request; limits/pricing.ts prices it. */
  output: OutputPlan;
  /**
   * The prompt's tokens as far as the gateway can tell without a tokenizer: token-id prompts exactly,
   * text at four characters per token. Used only when the engine never reported usage (a cut stream).
   */
  promptTokensEstimate: number;
  /** Hash of the prompt's start (system prompt and first user turn), for prefix-affinity routing; null for embeddings. */
  prefixHash: number | null;
  /**
   * The prompt may hold more tokens than the body has bytes: an image, audio or video part (by URL,
   * or any media the engine turns into many tokens), or a stored conversation the engine prepends
   * (Responses' previous_response_id). Budgets then reserve the whole context per sequence.
   */
  unboundedPrompt?: boolean;
  /** The parsed body (the OpenAI endpoints), which the caches key on (cache/policy.ts); read it, never change it. */
  json?: Record<string, unknown>;
}

/**
 * Every field vLLM honours that changes how many tokens it may generate, read once from the body.
 * Tokens per sequence are at most `maxTokens` (null: up to the context minus the prompt), at least
 * `minTokens`, and exactly the limit with `ignoreEos`.
 */
export interface OutputPlan {
  /**
   * The client's limit per sequence. Chat: `max_completion_tokens`, else `max_tokens`; absent or null
   * means no limit (up to the context). Completions: absent is vLLM's default of 16, an explicit null
   * means no limit (protocol.py `max_tokens: Optional[int] = 16`).
   */
  maxTokens: number | null;
  /** The field to name in errors about the request's size: the one that set the limit (embeddings: `input`). */
  limitField: "max_tokens" | "max_completion_tokens" | "max_output_tokens" | "input" | "file";
  /** `min_tokens`: EOS and stop strings are suppressed until each sequence has this many. */
  minTokens: number;
  /** `ignore_eos`: every sequence runs to its limit. */
  ignoreEos: boolean;
  /** Prompts in the request: a completions prompt list gets one set of choices per prompt. */
  prompts: number;
  /**
   * Sequences generated per prompt: `n`, or `best_of` when larger (vLLM generates best_of and returns
   * the best n). Beam search (`use_beam_search`) keeps `n` beams (beam width = n), so n covers it.
   */
  perPrompt: number;
}

type Json = Record<string, unknown>;

/**
 * vLLM's `priority` field (lower runs earlier under `--scheduling-policy priority`) would let one
 * caller jump every other tenant's queue on a shared engine: the gateway does not pass it from
 * clients. 0 (vLLM's default) and null are accepted as they change nothing.
 */
export function refuseEnginePriority(body: Json): void {
  const priority = body.priority;
  if (priority === undefined || priority === null || priority === 0) return;
  throw new ApiError("invalid_value", "'priority' cannot be set by clients: it would reorder other customers' requests on a shared GPU. Remove it.", { param: "priority" });
}

function invalid(param: string, message: string): ApiError {
  return new ApiError("invalid_value", message, { param });
}

function optionalInteger(body: Json, field: string, min: number, max = Number.MAX_SAFE_INTEGER): void {
  const value = body[field];
  if (value === undefined || value === null) return;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw invalid(field, `'${field}' must be an integer between ${min} and ${max}, got ${JSON.stringify(value)}.`);
  }
}

function optionalNumber(body: Json, field: string, min: number, max: number): void {
  const value = body[field];
  if (value === undefined || value === null) return;
  if (typeof value !== "number" || !Number.isFinite(value) || value < min || value > max) {
    throw invalid(field, `'${field}' must be a number between ${min} and ${max}, got ${JSON.stringify(value)}.`);
  }
}

function isTokenArray(value: unknown): boolean {
  return Array.isArray(value) && value.length > 0 && value.every((t) => typeof t === "number" && Number.isInteger(t));
}

function isTextOrTokens(value: unknown): boolean {
  if (typeof value === "string") return true;
  if (isTokenArray(value)) return true;
  return (
    Array.isArray(value) &&
    value.length > 0 &&
    (value.every((v) => typeof v === "string") || value.every((v) => isTokenArray(v)))
  );
}

// The roles OpenAI's chat API accepts; anything else is a 400 naming the field, as OpenAI answers.
const ROLES = new Set(["system", "developer", "user", "assistant", "tool", "function"]);

function checkMessages(body: Json): void {
  const messages = body.messages;
  if (messages === undefined) throw new ApiError("missing_field", "Missing required parameter: 'messages'.", { param: "messages" });
  if (!Array.isArray(messages) || messages.length === 0) {
    throw invalid("messages", "'messages' must be a non-empty array of message objects.");
  }
  messages.forEach((m: unknown, i) => {
    if (typeof m !== "object" || m === null || Array.isArray(m)) throw invalid(`messages[${i}]`, `'messages[${i}]' must be an object.`);
    const role = (m as Json).role;
    if (typeof role !== "string" || !ROLES.has(role)) {
      throw invalid(
        `messages[${i}].role`,
        `Invalid value for 'messages[${i}].role': ${typeof role === "string" ? `'${role}'` : JSON.stringify(role ?? null)}. Supported values are: 'system', 'developer', 'user', 'assistant', 'tool' and 'function'.`,
      );
    }
  });
}

// Four characters per token: OpenAI's rule of thumb for English text.
const textTokens = (text: string): number => Math.ceil(text.length / 4);

/** Estimated tokens of a prompt, input or message content: token arrays count exactly, text by length. */
function estimateTokens(value: unknown): number {
  if (typeof value === "string") return textTokens(value);
  if (!Array.isArray(value)) return 0;
  if (isTokenArray(value)) return value.length;
  return value.reduce((sum: number, part: unknown) => {
    if (typeof part === "object" && part !== null && !Array.isArray(part)) return sum + estimateTokens((part as Json).text);
    return sum + estimateTokens(part);
  }, 0);
}

/** Characters of the prompt's start that identify its prefix (a system prompt and the first turn fit). */
const PREFIX_CHARS = 2048;

function prefixHash(endpoint: OpenAIEndpoint, model: string, body: Json): number | null {
  if (endpoint === "embeddings") return null;
  let prefix: string;
  if (endpoint === "completions") prefix = typeof body.prompt === "string" ? body.prompt : JSON.stringify(body.prompt);
  else {
    const messages = body.messages as Json[];
    const firstUser = messages.findIndex((m) => m.role === "user");
    prefix = JSON.stringify(messages.slice(0, firstUser === -1 ? 1 : firstUser + 1).map((m) => [m.role, m.content]));
  }
  return fnv1a(`${model}\u0000${prefix.slice(0, PREFIX_CHARS)}`);
}

function promptTokensEstimate(endpoint: OpenAIEndpoint, body: Json): number {
  if (endpoint === "completions") return estimateTokens(body.prompt);
  if (endpoint === "embeddings") return estimateTokens(body.input);
  return (body.messages as Json[]).reduce((sum, m) => sum + estimateTokens(m.content), 0);
}

/**
 * Parses and validates an OpenAI request body for `endpoint`; throws a 400 naming the field.
 * Fields the gateway does not know are passed through untouched (engines accept extras).
 */
export function validateRequest(endpoint: OpenAIEndpoint, raw: string): ProxyRequest {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new ApiError(
      "invalid_json",
      "We could not parse the JSON body of your request. Send a JSON object with Content-Type: application/json.",
    );
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new ApiError("invalid_json", "The request body must be a JSON object.");
  }
  const body = parsed as Json;
  if (body.model === undefined) throw new ApiError("missing_field", "Missing required parameter: 'model'.", { param: "model" });
  if (typeof body.model !== "string" || body.model === "") throw invalid("model", "'model' must be a non-empty string.");

  if (endpoint === "chat") checkMessages(body);
  if (endpoint === "completions") {
    if (body.prompt === undefined) throw new ApiError("missing_field", "Missing required parameter: 'prompt'.", { param: "prompt" });
    if (!isTextOrTokens(body.prompt)) throw invalid("prompt", "'prompt' must be a string, an array of strings, or token ids.");
  }
  if (endpoint === "embeddings") {
    if (body.input === undefined) throw new ApiError("missing_field", "Missing required parameter: 'input'.", { param: "input" });
    if (!isTextOrTokens(body.input)) throw invalid("input", "'input' must be a string, an array of strings, or token ids.");
  }

  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== "boolean") {
    throw invalid("stream", "'stream' must be a boolean.");
  }
  const stream = body.stream === true && endpoint !== "embeddings";
  const options = body.stream_options;
  if (options !== undefined && options !== null) {
    if (typeof options !== "object" || Array.isArray(options)) throw invalid("stream_options", "'stream_options' must be an object.");
    if (!stream) throw invalid("stream_options", "The 'stream_options' parameter is only allowed when 'stream' is enabled.");
  }
  optionalInteger(body, "max_tokens", 1);
  optionalInteger(body, "max_completion_tokens", 1);
  optionalInteger(body, "n", 1, 128);
  // llama.cpp's names for the output limit (it wins over max_tokens there; -1 is no limit) and for n.
  optionalInteger(body, "n_predict", -1);
  optionalInteger(body, "n_cmpl", 1, 128);
  optionalInteger(body, "best_of", 1, 128);
  optionalInteger(body, "min_tokens", 0);
  if (body.ignore_eos !== undefined && body.ignore_eos !== null && typeof body.ignore_eos !== "boolean") {
    throw invalid("ignore_eos", "'ignore_eos' must be a boolean.");
  }
  optionalNumber(body, "temperature", 0, 2);
  refuseEnginePriority(body);
  optionalNumber(body, "top_p", 0, 1);

  const clientOptions = (options ?? {}) as Json;
  const clientWantsUsage = stream && clientOptions.include_usage === true;
  let upstreamBody = raw;
  if (stream && !clientWantsUsage) {
    // The gateway must always learn a stream's usage: ask the engine for the usage chunk and strip
    // it from what the client receives (sse-tap.ts).
    body.stream_options = { ...clientOptions, include_usage: true };
    upstreamBody = JSON.stringify(body);
  }
  return {
    endpoint,
    model: body.model,
    stream,
    clientWantsUsage,
    upstreamBody,
    output: outputPlan(endpoint, body),
    promptTokensEstimate: promptTokensEstimate(endpoint, body),
    prefixHash: prefixHash(endpoint, body.model, body),
    unboundedPrompt: endpoint === "chat" && hasMedia(body.messages as Json[]),
    json: body,
  };
}

// Chat content parts whose tokens the engine computes from the media itself (vLLM's multimodal inputs).
const MEDIA_PARTS = new Set(["image_url", "input_audio", "audio_url", "video_url", "image_embeds"]);

/** Whether any message carries a media part. */
function hasMedia(messages: Json[]): boolean {
  return messages.some((m) => Array.isArray(m.content) && m.content.some((p: unknown) => typeof p === "object" && p !== null && MEDIA_PARTS.has((p as Json).type as string)));
}

function promptCount(prompt: unknown): number {
  // A flat token-id array is one prompt; a list of strings or of token-id arrays is a batch.
  if (typeof prompt === "string" || isTokenArray(prompt)) return 1;
  return Array.isArray(prompt) ? prompt.length : 1;
}

function outputPlan(endpoint: OpenAIEndpoint, body: Json): OutputPlan {
  if (endpoint === "embeddings") return { maxTokens: 0, limitField: "input", minTokens: 0, ignoreEos: false, prompts: 1, perPrompt: 1 };
  // serving_engine.py: `max_completion_tokens or max_tokens` (0 cannot reach here: both are >= 1).
  const completionLimit = endpoint === "chat" && typeof body.max_completion_tokens === "number";
  let requested = completionLimit ? body.max_completion_tokens : endpoint === "chat" || "max_tokens" in body ? body.max_tokens : 16;
  // llama-server reads `n_predict` over max_tokens (server-common.cpp), -1 meaning no limit: an
  // engine that honours it generates that much, so it prices the request.
  // Engines that ignore it (vLLM) use max_tokens, so the larger of the two is what may run.
  if (typeof body.n_predict === "number" && typeof requested === "number") requested = body.n_predict < 0 ? null : Math.max(body.n_predict, requested);
  const n = Math.max(typeof body.n === "number" ? body.n : 1, typeof body.n_cmpl === "number" ? body.n_cmpl : 1);
  return {
    maxTokens: typeof requested === "number" ? requested : null,
    limitField: completionLimit ? "max_completion_tokens" : "max_tokens",
    minTokens: typeof body.min_tokens === "number" ? body.min_tokens : 0,
    ignoreEos: body.ignore_eos === true,
    prompts: endpoint === "completions" ? promptCount(body.prompt) : 1,
    perPrompt: Math.max(n, typeof body.best_of === "number" ? body.best_of : 1),
  };
}
