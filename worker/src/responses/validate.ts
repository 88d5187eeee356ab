import { ApiError } from "../errors.ts";
import { refuseEnginePriority, type ProxyRequest } from "../proxy/validate.ts";
import { fnv1a } from "../routing/strategies.ts";

type Json = Record<string, unknown>;

function invalid(param: string, message: string): ApiError {
  return new ApiError("invalid_value", message, { param });
}

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Characters of text in Responses input: a string, or items whose text parts count. */
function inputChars(input: unknown): number {
  if (typeof input === "string") return input.length;
  if (!Array.isArray(input)) return 0;
  let chars = 0;
  for (const item of input) {
    if (!isObject(item)) continue;
    if (typeof item.content === "string") chars += item.content.length;
    else if (Array.isArray(item.content)) for (const part of item.content) if (isObject(part) && typeof part.text === "string") chars += part.text.length;
    if (typeof item.output === "string") chars += item.output.length;
    if (typeof item.arguments === "string") chars += item.arguments.length;
  }
  return chars;
}

/** Whether the input carries parts whose tokens the body's bytes do not bound (an image by URL, a file). */
function hasMedia(input: unknown): boolean {
  if (!Array.isArray(input)) return false;
  return input.some((item) => isObject(item) && Array.isArray(item.content) && item.content.some((p) => isObject(p) && (p.type === "input_image" || p.type === "input_file" || p.type === "input_audio")));
}

/** A validated `POST /v1/responses`, with the response it continues, if any. */
export interface ResponsesRequest extends ProxyRequest {
  /** `previous_response_id`: the stored response this one continues (must be served where it is stored). */
  previousResponseId: string | null;
  /** The parsed body, to which the gateway adds the response id per node (ids.ts) before sending it. */
  body: Json;
}

/**
 * Parses and validates a Responses API body; throws a 400 naming the field. What the engine may
 * generate is `max_output_tokens` (null or absent: up to the context, as vLLM clamps it), one
 * sequence. A continued response's prompt holds the stored conversation, and an image's tokens are
 * not bounded by the body's bytes: both are priced at the whole context (`unboundedPrompt`).
 * Background responses are refused: their usage never passes the gateway (it is only in the stored
 * object), so they could not be metered.
 */
export function validateResponses(raw: string): ResponsesRequest {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new ApiError("invalid_json", "We could not parse the JSON body of your request. Send a JSON object with Content-Type: application/json.");
  }
  if (!isObject(parsed)) throw new ApiError("invalid_json", "The request body must be a JSON object.");
  const body = parsed;
  if (body.model === undefined) throw new ApiError("missing_field", "Missing required parameter: 'model'.", { param: "model" });
  if (typeof body.model !== "string" || body.model === "") throw invalid("model", "'model' must be a non-empty string.");
  if (body.input === undefined) throw new ApiError("missing_field", "Missing required parameter: 'input'.", { param: "input" });
  if (typeof body.input !== "string" && (!Array.isArray(body.input) || body.input.length === 0)) {
    throw invalid("input", "'input' must be a string or a non-empty array of input items.");
  }
  if (body.instructions !== undefined && body.instructions !== null && typeof body.instructions !== "string") throw invalid("instructions", "'instructions' must be a string.");
  const limit = body.max_output_tokens;
  if (limit !== undefined && limit !== null && (typeof limit !== "number" || !Number.isInteger(limit) || limit < 1)) {
    throw invalid("max_output_tokens", `'max_output_tokens' must be an integer of at least 1, got ${JSON.stringify(limit)}.`);
  }
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== "boolean") throw invalid("stream", "'stream' must be a boolean.");
  if (body.background === true) {
    throw invalid("background", "Background responses are not supported through this gateway: their usage is only in the stored response, so they could not be metered. Send the request without 'background' (stream it to get output as it is generated).");
  }
  refuseEnginePriority(body);
  const previous = body.previous_response_id;
  if (previous !== undefined && previous !== null && (typeof previous !== "string" || previous === "")) {
    throw invalid("previous_response_id", "'previous_response_id' must be the id of an earlier response.");
  }
  const previousResponseId = typeof previous === "string" ? previous : null;
  const chars = inputChars(body.input) + (typeof body.instructions === "string" ? body.instructions.length : 0);
  const start = typeof body.input === "string" ? body.input : JSON.stringify(body.input);
  return {
    endpoint: "responses",
    model: body.model,
    stream: body.stream === true,
    // A Responses stream always carries its usage (response.completed): nothing to strip.
    clientWantsUsage: true,
    upstreamBody: raw,
    output: { maxTokens: typeof limit === "number" ? limit : null, limitField: "max_output_tokens", minTokens: 0, ignoreEos: false, prompts: 1, perPrompt: 1 },
    promptTokensEstimate: Math.ceil(chars / 4),
    prefixHash: fnv1a(`${body.model}\u0000${typeof body.instructions === "string" ? body.instructions : ""}\u0000${start.slice(0, 2048)}`),
    unboundedPrompt: previousResponseId !== null || hasMedia(body.input),
    previousResponseId,
    body,
  };
}
