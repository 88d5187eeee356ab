import { ApiError } from "../errors.ts";
import { costClass, type OutputPlan, type ProxyRequest } from "../proxy/validate.ts";
import type { ModelEntry } from "../routing/snapshot.ts";
import type { Cost } from "./budgets.ts";

// Pricing is pure computation on the body validate.ts already parsed: no I/O on the hot path.

/** Sequences the engine generates: one set of `perPrompt` (n, or best_of when larger) per prompt. */
export function sequences(plan: OutputPlan): number {
  return plan.prompts * plan.perPrompt;
}

/**
 * Refuses, with a 400 that says so, a request the model can never serve: an output limit or
 * min_tokens above the context length (vLLM would answer 400 "maximum context length" too, after a
 * reservation and a round trip to the node).
 */
export function checkFitsContext(req: ProxyRequest, model: ModelEntry): void {
  // vLLM clamps a Responses max_output_tokens to the context instead of refusing it.
  if (costClass(req.endpoint) !== "generate" || req.endpoint === "responses") return;
  const { maxTokens, minTokens } = req.output;
  const context = model.contextLength;
  if (maxTokens !== null && maxTokens > context) {
    const field = req.output.limitField;
    throw new ApiError(
      "context_length_exceeded",
      `'${field}' is too large: ${maxTokens}. This model's maximum context length is ${context} tokens, so '${field}' must be lower than ${context} minus the prompt's tokens.`,
      { param: field },
    );
  }
  if (minTokens >= context) {
    throw new ApiError(
      "context_length_exceeded",
      `'min_tokens' is too large: ${minTokens}. This model's maximum context length is ${context} tokens, so 'min_tokens' must be lower than ${context} minus the prompt's tokens.`,
      { param: "min_tokens" },
    );
  }
}

/**
 * The most a request can cost, reserved against budgets before it runs. Throws a 400 when the
 * request can never fit the model's context. Prompt tokens are bounded by the body's bytes (a token
 * is at least one byte of the JSON it came in), except for media and stored conversations
 * (`unboundedPrompt`: the whole context per sequence); output by the per-sequence limit × sequences, where
 * a missing limit (chat without one, completions with `max_tokens: null`) is the whole context;
 * every prompt with its outputs is bounded by the context per sequence. Spend uses the higher of the
 * two prices and the dearest candidate region's multiplier. Audio (transcriptions, translations) is
 * the context per 30-second chunk, plus its duration at the catalogue's price per minute.
 */
export function maxCost(req: ProxyRequest, bodyBytes: number, model: ModelEntry, priceMultiplier = 1): Cost {
  checkFitsContext(req, model);
  let tokens: number;
  const cost = costClass(req.endpoint);
  // Audio: every 30-second chunk is an engine request that may fill the context, plus the audio's own price.
  if (cost === "audio") tokens = model.contextLength * req.output.prompts;
  else if (cost === "pool") tokens = bodyBytes;
  // Counting or converting tokens generates nothing and is not usage.
  else if (cost === "free") tokens = 0;
  else {
    const seqs = sequences(req.output);
    const context = model.contextLength;
    // min_tokens cannot raise the limit (vLLM refuses min_tokens > max_tokens); it is kept for safety.
    const perSequence = Math.min(context, Math.max(req.output.maxTokens ?? context, req.output.minTokens));
    // Media and stored conversations can fill the context whatever the body's size.
    tokens = req.unboundedPrompt ? context * seqs : Math.min(bodyBytes + perSequence * seqs, context * seqs);
  }
  const price = Math.max(model.inputPrice, model.outputPrice);
  return { tokens, spend: Math.ceil((tokens * price + audioMicros(model, req.audioMs ?? 0)) * priceMultiplier), requests: 1 };
}

/** The price of `ms` of audio in micro-USD (before the region's multiplier): the catalogue's USD per minute. */
export function audioMicros(model: ModelEntry, ms: number): number {
  return ms === 0 || !model.audioPrice ? 0 : (ms * model.audioPrice * 1_000_000) / 60_000;
}

/** Output tokens per sequence assumed for tokens-per-minute when the client set no limit (OpenAI's estimate caps it too). */
const UNLIMITED_ESTIMATE = 4096;

/**
 * The tokens a request counts against tokens-per-minute limits at admission: OpenAI's estimate
 * (body bytes / 4 for the prompt, plus the most output it asked for) × every sequence the engine will
 * generate. Without a limit it assumes 4,096 per sequence, at least min_tokens, and with ignore_eos
 * the rest of the context. When the real usage is larger, the difference is charged after the
 * response (admission.ts `finish`).
 */
export function rateTokens(req: ProxyRequest, bodyBytes: number, model: ModelEntry): number {
  // Audio bytes are not text: each 30-second chunk counts as the output it may generate (as without a limit).
  if (costClass(req.endpoint) === "audio") return req.output.prompts * Math.min(model.contextLength, UNLIMITED_ESTIMATE);
  const prompt = Math.ceil(bodyBytes / 4);
  if (costClass(req.endpoint) === "pool") return prompt;
  if (costClass(req.endpoint) === "free") return 0;
  const { maxTokens, minTokens, ignoreEos, prompts } = req.output;
  const context = model.contextLength;
  let perSequence: number;
  if (maxTokens !== null) perSequence = Math.min(maxTokens, context);
  else if (ignoreEos) perSequence = Math.max(1, context - Math.ceil(req.promptTokensEstimate / prompts));
  else perSequence = Math.min(context, Math.max(UNLIMITED_ESTIMATE, minTokens));
  return prompt + perSequence * sequences(req.output);
}
