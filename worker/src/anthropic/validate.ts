import { ApiError } from "../errors.ts";
import type { ProxyRequest } from "../proxy/validate.ts";
import { fnv1a } from "../routing/strategies.ts";

type Json = Record<string, unknown>;

/** The Anthropic Messages endpoints: a message, or counting a message's input tokens. */
export type MessagesEndpoint = "messages" | "count_tokens";

function invalid(param: string, message: string): ApiError {
  return new ApiError("invalid_value", message, { param });
}

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Characters of text in a content value: a string, or blocks whose text (and tool results' text) counts. */
function contentChars(content: unknown): number {
  if (typeof content === "string") return content.length;
  if (!Array.isArray(content)) return 0;
  let chars = 0;
  for (const block of content) {
    if (!isObject(block)) continue;
    if (typeof block.text === "string") chars += block.text.length;
    else if (block.type === "tool_use") chars += JSON.stringify(block.input ?? {}).length;
    else if (block.type === "tool_result") chars += contentChars(block.content);
  }
  return chars;
}

// The roles the Messages API takes: user and assistant, and system (SDK 1.17; vLLM folds it into the system prompt).
const ROLES = new Set(["user", "assistant", "system"]);

function checkMessages(body: Json): Json[] {
  const messages = body.messages;
  if (messages === undefined) throw new ApiError("missing_field", "messages: Field required. Send at least one message.", { param: "messages" });
  if (!Array.isArray(messages) || messages.length === 0) throw invalid("messages", "messages: must be a non-empty list of {role, content} objects.");
  messages.forEach((m: unknown, i) => {
    if (!isObject(m)) throw invalid(`messages.${i}`, `messages.${i}: must be an object with 'role' and 'content'.`);
    if (typeof m.role !== "string" || !ROLES.has(m.role)) {
      throw invalid(`messages.${i}.role`, `messages.${i}.role: Input should be 'user' or 'assistant', got ${JSON.stringify(m.role ?? null)}.`);
    }
    if (typeof m.content !== "string" && !Array.isArray(m.content)) {
      throw invalid(`messages.${i}.content`, `messages.${i}.content: must be a string or a list of content blocks.`);
    }
  });
  return messages as Json[];
}

/**
 * Parses and validates an Anthropic Messages body (`POST /v1/messages`, or `/v1/messages/count_tokens`);
 * throws a 400 naming the field, which the app renders in Anthropic's error shape. The body goes to
 * the node unchanged: engines that serve `/v1/messages` natively (vLLM, llama.cpp) convert it. What
 * the engine may generate is `max_tokens` (required by the API; vLLM and llama.cpp map it to the
 * chat limit and ignore other limit fields on this route), one sequence; counting tokens generates
 * nothing.
 */
export function validateMessages(endpoint: MessagesEndpoint, raw: string): ProxyRequest {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new ApiError("invalid_json", "The request body is not valid JSON. Send a JSON object with Content-Type: application/json.");
  }
  if (!isObject(parsed)) throw new ApiError("invalid_json", "The request body must be a JSON object.");
  const body = parsed;
  if (body.model === undefined) throw new ApiError("missing_field", "model: Field required.", { param: "model" });
  if (typeof body.model !== "string" || body.model === "") throw invalid("model", "model: must be a non-empty string.");
  const messages = checkMessages(body);
  if (body.system !== undefined && typeof body.system !== "string" && !Array.isArray(body.system)) {
    throw invalid("system", "system: must be a string or a list of text blocks.");
  }
  let maxTokens = 0;
  let stream = false;
  if (endpoint === "messages") {
    if (body.max_tokens === undefined) throw new ApiError("missing_field", "max_tokens: Field required. Set the most tokens the answer may have.", { param: "max_tokens" });
    if (typeof body.max_tokens !== "number" || !Number.isInteger(body.max_tokens) || body.max_tokens < 1) {
      throw invalid("max_tokens", `max_tokens: must be an integer of at least 1, got ${JSON.stringify(body.max_tokens)}.`);
    }
    maxTokens = body.max_tokens;
    if (body.stream !== undefined && body.stream !== null && typeof body.stream !== "boolean") throw invalid("stream", "stream: must be a boolean.");
    stream = body.stream === true;
    if (body.stop_sequences !== undefined && (!Array.isArray(body.stop_sequences) || !body.stop_sequences.every((s) => typeof s === "string"))) {
      throw invalid("stop_sequences", "stop_sequences: must be a list of strings.");
    }
  }
  const systemChars = contentChars(body.system);
  const chars = messages.reduce((sum, m) => sum + contentChars(m.content), systemChars);
  const firstUser = messages.findIndex((m) => m.role === "user");
  const prefix = JSON.stringify([body.system ?? null, messages.slice(0, firstUser === -1 ? 1 : firstUser + 1).map((m) => [m.role, m.content])]);
  return {
    endpoint,
    model: body.model,
    stream,
    // Anthropic streams always carry their usage (message_start, message_delta): nothing to strip.
    clientWantsUsage: true,
    upstreamBody: raw,
    output: { maxTokens, limitField: "max_tokens", minTokens: 0, ignoreEos: false, prompts: 1, perPrompt: 1 },
    promptTokensEstimate: Math.ceil(chars / 4),
    prefixHash: fnv1a(`${body.model}\u0000${prefix.slice(0, 2048)}`),
    // An image or document block's tokens are not bounded by its bytes (a URL source especially).
    unboundedPrompt: messages.some((m) => Array.isArray(m.content) && m.content.some((b: unknown) => isObject(b) && (b.type === "image" || b.type === "document"))),
  };
}
