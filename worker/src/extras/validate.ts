import { ApiError } from "../errors.ts";
import { refuseEnginePriority, type ProxyRequest } from "../proxy/validate.ts";

type Json = Record<string, unknown>;

/** vLLM's routes beyond OpenAI's that users call through gateways (api-surfaces.md §4.2, §4.3). */
export type ExtraEndpoint = "rerank" | "score" | "tokenize" | "detokenize";

function invalid(param: string, message: string): ApiError {
  return new ApiError("invalid_value", message, { param });
}

function missing(field: string): ApiError {
  return new ApiError("missing_field", `Missing required parameter: '${field}'.`, { param: field });
}

const isText = (v: unknown): boolean => typeof v === "string";
const isTextList = (v: unknown): boolean => Array.isArray(v) && v.length > 0 && v.every(isText);
const isTokenList = (v: unknown): boolean => Array.isArray(v) && v.every((t) => typeof t === "number" && Number.isInteger(t) && t >= 0);

/**
 * Validates the body of a rerank, score, tokenize or detokenize request; throws a 400 naming the
 * field. The gateway needs `model` to route (vLLM would default to its only model). Rerank and score
 * read their input once, like embeddings; tokenize and detokenize only convert, and cost nothing.
 */
export function validateExtra(endpoint: ExtraEndpoint, raw: string): ProxyRequest {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new ApiError("invalid_json", "We could not parse the JSON body of your request. Send a JSON object with Content-Type: application/json.");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new ApiError("invalid_json", "The request body must be a JSON object.");
  const body = parsed as Json;
  if (body.model === undefined) throw missing("model");
  if (typeof body.model !== "string" || body.model === "") throw invalid("model", "'model' must be a non-empty string.");
  refuseEnginePriority(body);
  let chars = 0;
  switch (endpoint) {
    case "rerank":
      if (body.query === undefined) throw missing("query");
      if (!isText(body.query)) throw invalid("query", "'query' must be a string.");
      if (body.documents === undefined) throw missing("documents");
      if (!Array.isArray(body.documents) || body.documents.length === 0) throw invalid("documents", "'documents' must be a non-empty list.");
      if (body.top_n !== undefined && body.top_n !== null && (typeof body.top_n !== "number" || !Number.isInteger(body.top_n) || body.top_n < 0)) {
        throw invalid("top_n", "'top_n' must be a non-negative integer.");
      }
      chars = (body.query as string).length + JSON.stringify(body.documents).length;
      break;
    case "score":
      for (const field of ["text_1", "text_2"]) {
        if (body[field] === undefined) throw missing(field);
        if (!isText(body[field]) && !isTextList(body[field])) throw invalid(field, `'${field}' must be a string or a non-empty list of strings.`);
      }
      if (Array.isArray(body.text_1) && Array.isArray(body.text_2) && body.text_1.length !== body.text_2.length) {
        throw invalid("text_2", "'text_1' and 'text_2' lists must have the same length (pairs are scored one to one).");
      }
      chars = JSON.stringify(body.text_1).length + JSON.stringify(body.text_2).length;
      break;
    case "tokenize":
      // vLLM takes `prompt` or `messages`; llama.cpp's llama-server takes `content`.
      if (body.prompt === undefined && body.messages === undefined && body.content === undefined) throw missing("prompt");
      if (body.prompt !== undefined && !isText(body.prompt)) throw invalid("prompt", "'prompt' must be a string.");
      if (body.content !== undefined && !isText(body.content)) throw invalid("content", "'content' must be a string.");
      if (body.messages !== undefined && (!Array.isArray(body.messages) || body.messages.length === 0)) throw invalid("messages", "'messages' must be a non-empty list.");
      break;
    case "detokenize":
      if (body.tokens === undefined) throw missing("tokens");
      if (!isTokenList(body.tokens)) throw invalid("tokens", "'tokens' must be a list of token ids (non-negative integers).");
      break;
  }
  return {
    endpoint,
    model: body.model,
    stream: false,
    clientWantsUsage: false,
    upstreamBody: raw,
    output: { maxTokens: 0, limitField: "input", minTokens: 0, ignoreEos: false, prompts: 1, perPrompt: 1 },
    promptTokensEstimate: Math.ceil(chars / 4),
    prefixHash: null,
  };
}
