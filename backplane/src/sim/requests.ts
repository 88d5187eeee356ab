import { type AnswerSpec, checkChatLogprobs, checkToolUsage, decideAnswer } from "./answer.ts";
import { badRequest } from "./errors.ts";
import { chatSchema, completionSchema, modelValidatorError, truthy, validateBody } from "./schemas.ts";
import { CHAT_TEMPLATE_TOKENS, countTextTokens, fnv1a, hashTokenIds, renderChat, type SimChatMessage } from "./tokenizer.ts";

/** A fault the request asks the simulator to inject (`sim_fault`). */
export type SimFault = "error_mid_stream" | "drop_mid_stream" | "engine_error";

/** One tokenised prompt: its length, a content hash, and cumulative prefixes for prefix caching. */
export interface PromptInfo {
  tokens: number;
  hash: number;
  prefixTokens: number[];
  prefixHashes: number[];
}

/** A validated chat or completions request, reduced to what the simulated engine acts on. */
export interface GenerationRequest {
  endpoint: "chat" | "completion";
  model: string | null;
  stream: boolean;
  includeUsage: boolean;
  continuousUsage: boolean;
  n: number;
  /** `best_of` as sent (vLLM V1 refuses values above 1). */
  bestOf: number | null;
  seed: number | null;
  /** The request's own output limit (chat: max_completion_tokens over max_tokens); null = none. */
  maxTokens: number | null;
  minTokens: number;
  ignoreEos: boolean;
  temperature: number | null;
  topP: number | null;
  stop: string[];
  requestId: string | null;
  /** vLLM's `priority` (default 0; lower runs earlier under --scheduling-policy priority). */
  priority: number;
  /** The shape of the answer: text, guided JSON, or tool calls (chat; completions are text). */
  answer: AnswerSpec;
  /** Top-k logprobs asked for (chat top_logprobs with logprobs:true, completions logprobs); null: none. */
  logprobs: number | null;
  /** Chat include_reasoning (default true). */
  includeReasoning: boolean;
  /** Chat: the conversation (scripted answers match it; script.ts). Completions: empty. */
  messages: readonly SimChatMessage[];
  /** Image parts in the conversation (a text-only model refuses them). */
  images: number;
  /** Chat: one prompt. Completions: one per prompt in a batch. */
  prompts: PromptInfo[];
  fault: SimFault | null;
  faultAfter: number;
  ttftMs: number | null;
}

/** Default `sim_fault_after`. */
export const DEFAULT_FAULT_AFTER = 3;

function checkStreamOptions(raw: Record<string, unknown>): void {
  // protocol.py validate_stream_options: `if data.get("stream_options") and not data.get("stream")`.
  if (truthy(raw.stream_options) && !truthy(raw.stream)) {
    throw modelValidatorError("Stream options can only be defined when `stream=True`.");
  }
}

function usageFlags(stream: boolean, options: { include_usage?: boolean | null; continuous_usage_stats?: boolean | null } | null | undefined) {
  // serving_chat.py: usage only when stream_options is given; include_usage defaults to True inside it.
  if (!stream || !options) return { includeUsage: false, continuousUsage: false };
  const includeUsage = options.include_usage === undefined ? true : options.include_usage === true;
  return { includeUsage, continuousUsage: includeUsage && options.continuous_usage_stats === true };
}

function stopList(stop: string | string[] | null | undefined): string[] {
  if (typeof stop === "string") return stop === "" ? [] : [stop];
  return (stop ?? []).filter((s) => s !== "");
}

function textPrompt(text: string): PromptInfo {
  const tokens = CHAT_TEMPLATE_TOKENS.bos + countTextTokens(text);
  const hash = fnv1a(text);
  return { tokens, hash, prefixTokens: [tokens], prefixHashes: [hash] };
}

function tokenPrompt(ids: readonly number[]): PromptInfo {
  const hash = hashTokenIds(ids);
  return { tokens: ids.length, hash, prefixTokens: [ids.length], prefixHashes: [hash] };
}

/** Validates a /v1/chat/completions body. */
export function parseChatRequest(raw: unknown): GenerationRequest {
  const object = raw !== null && typeof raw === "object" && !Array.isArray(raw) ? (raw as Record<string, unknown>) : null;
  // The "before" model validators, in protocol.py's order.
  if (object) checkStreamOptions(object);
  if (object) checkChatLogprobs(object);
  const toolChoice = object ? checkToolUsage(object) : "none";
  const body = validateBody(chatSchema, raw);
  const stream = body.stream === true;
  // The template renders the tools as sent (vLLM passes them even with tool_choice "none").
  const rendered = renderChat(body.messages, object && Array.isArray(object.tools) ? object.tools : null);
  return {
    endpoint: "chat",
    model: body.model ?? null,
    stream,
    ...usageFlags(stream, body.stream_options),
    n: body.n ?? 1,
    bestOf: body.best_of ?? null,
    seed: body.seed ?? null,
    // serving_engine.py: `request.max_completion_tokens or request.max_tokens` (Python `or`: 0 falls through).
    maxTokens: body.max_completion_tokens || (body.max_tokens ?? null),
    minTokens: body.min_tokens ?? 0,
    ignoreEos: body.ignore_eos === true,
    temperature: body.temperature ?? null,
    topP: body.top_p ?? null,
    stop: stopList(body.stop),
    requestId: body.request_id ?? null,
    priority: body.priority ?? 0,
    answer: decideAnswer(body, toolChoice),
    // serving_chat.py: logprobs only when `request.logprobs and request.top_logprobs is not None` (default 0).
    logprobs: body.logprobs === true && object?.top_logprobs !== null ? (body.top_logprobs ?? 0) : null,
    includeReasoning: body.include_reasoning !== false,
    messages: body.messages,
    images: rendered.images,
    prompts: [rendered],
    fault: body.sim_fault ?? null,
    faultAfter: body.sim_fault_after ?? DEFAULT_FAULT_AFTER,
    ttftMs: body.sim_ttft_ms ?? null,
  };
}

/** Validates a /v1/completions body; a batch of prompts becomes several prompts. */
export function parseCompletionRequest(raw: unknown): GenerationRequest {
  const object = raw !== null && typeof raw === "object" && !Array.isArray(raw) ? (raw as Record<string, unknown>) : null;
  if (object) {
    checkStreamOptions(object);
    // protocol.py CompletionRequest.check_logprobs.
    if (typeof object.logprobs === "number" && object.logprobs < 0) throw modelValidatorError("`logprobs` must be a positive value.");
    if (object.prompt === undefined || object.prompt === null) {
      if (object.prompt_embeds === undefined || object.prompt_embeds === null) {
        throw modelValidatorError("At least one of `prompt` or `prompt_embeds` must be set.");
      }
      throw badRequest("prompt_embeds is not supported by the simulated engine.");
    }
  }
  const body = validateBody(completionSchema, raw);
  const stream = body.stream === true;
  const prompt = body.prompt ?? "";
  let prompts: PromptInfo[];
  const list: readonly unknown[] = typeof prompt === "string" ? [] : prompt;
  if (typeof prompt === "string") prompts = [textPrompt(prompt)];
  else if (list.length === 0) throw badRequest("Prompt cannot be empty.");
  else if (list.every((p): p is string => typeof p === "string")) prompts = list.map(textPrompt);
  else if (list.every((p): p is number => typeof p === "number")) prompts = [tokenPrompt(list)];
  else prompts = list.map((p) => tokenPrompt(Array.isArray(p) ? p.filter((x): x is number => typeof x === "number") : []));
  return {
    endpoint: "completion",
    model: body.model ?? null,
    stream,
    ...usageFlags(stream, body.stream_options),
    n: body.n ?? 1,
    bestOf: body.best_of ?? null,
    seed: body.seed ?? null,
    // protocol.py CompletionRequest: `max_tokens: Optional[int] = 16`; an explicit null means no limit.
    maxTokens: object && "max_tokens" in object ? (body.max_tokens ?? null) : 16,
    minTokens: body.min_tokens ?? 0,
    ignoreEos: body.ignore_eos === true,
    temperature: body.temperature ?? null,
    topP: body.top_p ?? null,
    stop: stopList(body.stop),
    requestId: body.request_id ?? null,
    priority: body.priority ?? 0,
    answer: { kind: "text" },
    logprobs: body.logprobs ?? null,
    includeReasoning: true,
    messages: [],
    images: 0,
    prompts,
    fault: body.sim_fault ?? null,
    faultAfter: body.sim_fault_after ?? DEFAULT_FAULT_AFTER,
    ttftMs: body.sim_ttft_ms ?? null,
  };
}
