import type { ServerResponse } from "node:http";
import { z } from "zod";
import type { EngineState } from "./engine.ts";
import { badRequest, modelNotFound, type SimHttpError, sendJson } from "./errors.ts";
import { randomHex } from "./generate.ts";
import { lookupModel } from "./lora.ts";
import { type ModelMetrics, observe } from "./metrics.ts";
import { validateBody } from "./schemas.ts";
import { countTextTokens, fnv1a } from "./tokenizer.ts";

/**
 * vLLM's `POST /rerank` (also `/v1/rerank`, `/v2/rerank`) and `POST /score` (also `/v1/score`):
 * serving_score.py, protocol.py ScoreRequest/RerankRequest, api_server.py. The simulator's embed
 * models serve them as a cross-encoder does: every (query, document) pair is one engine request
 * whose prompt is `[CLS] query [SEP] document [SEP]`, and its score is deterministic (`pairScore`).
 */

const int = z.number().int();
const fault = { sim_fault: z.enum(["error_mid_stream", "drop_mid_stream", "engine_error"]).nullish() };

/** RerankRequest (text only: the multimodal ScoreMultiModalParam is not simulated). */
const rerankSchema = z.object({
  model: z.string().nullish(),
  query: z.string(),
  documents: z.array(z.string()),
  top_n: int.optional(),
  truncate_prompt_tokens: int.min(-1).nullish(),
  ...fault,
});

/** ScoreRequest (text only). */
const scoreSchema = z.object({
  model: z.string().nullish(),
  text_1: z.union([z.array(z.string()), z.string()]),
  text_2: z.union([z.array(z.string()), z.string()]),
  truncate_prompt_tokens: int.min(-1).nullish(),
  ...fault,
});

/** Special tokens of a pair: a BERT cross-encoder's tokenizer adds [CLS] q [SEP] d [SEP]. */
export const PAIR_SPECIAL_TOKENS = 3;

/** Prompt tokens of one (query, document) pair, before truncation. */
export function pairTokens(query: string, document: string): number {
  return PAIR_SPECIAL_TOKENS + countTextTokens(query) + countTextTokens(document);
}

/** Distinct lower-cased word runs, with the tokenizer's word characters (ASCII letters, digits, `_`, anything non-ASCII). */
function words(text: string): Set<string> {
  return new Set(text.toLowerCase().match(/[0-9a-z_\u0080-\uffff]+/g) ?? []);
}

/**
 * A pair's relevance in (0, 1): 0.9 × the share of the query's distinct words (lower-cased word
 * runs) found in the document, plus 0.1 × a hash of the pair, which breaks ties. A float32 value,
 * as the model's output is, so the JSON shows the same digits Python's float repr would.
 */
export function pairScore(query: string, document: string): number {
  const q = words(query);
  const d = words(document);
  let shared = 0;
  for (const w of q) if (d.has(w)) shared++;
  const coverage = q.size === 0 ? 0 : shared / q.size;
  const jitter = (fnv1a(document, fnv1a(query) ^ 0x5c) + 0.5) / 2 ** 32;
  return Math.fround(0.9 * coverage + 0.1 * jitter);
}

/** The API names vLLM's handler-is-None answers use (api_server.py). */
type PoolingApi = "Rerank (Score) API" | "Score API";

/** The embed model a request names (an omitted name is the first embed model); other models answer vLLM's 400. */
function poolingModel(state: EngineState, name: string | null | undefined, api: PoolingApi): ModelMetrics {
  const all = [...state.metrics.values()];
  const found = name === null || name === undefined ? (all.find((m) => m.model.kind === "embed") ?? all[0]) : lookupModel(state, name);
  if (!found) throw modelNotFound(name ?? "");
  if (found.model.kind !== "embed") throw badRequest(`The model does not support ${api}`);
  return found;
}

/** score_utils.py _validate_score_input_lens. */
function checkLengths(left: number, right: number): SimHttpError | null {
  if (left > 1 && left !== right) return badRequest("Input lengths must be either 1:1, 1:N or N:N");
  if (left === 0) return badRequest("At least one text element must be given");
  if (right === 0) return badRequest("At least one text_pair element must be given");
  return null;
}

interface ScoredPair {
  score: number;
  tokens: number;
}

/**
 * Scores the pairs (a single left text is paired with every right one) after vLLM's checks:
 * truncation size, lengths, then each pair's context (serving_engine.py _validate_input, whose
 * operation is "score" for /score and "embedding generation" for rerank). Each pair then counts in
 * the metrics as the engine request it is in vLLM.
 */
function scorePairs(m: ModelMetrics, left: readonly string[], right: readonly string[], truncate: number | null, operation: string, arrival: number): ScoredPair[] {
  const { maxModelLen } = m.model;
  if (truncate !== null && truncate > maxModelLen) {
    throw badRequest(`truncate_prompt_tokens value (${truncate}) is greater than max_model_len (${maxModelLen}). Please, select a smaller truncation size.`);
  }
  const problem = checkLengths(left.length, right.length);
  if (problem) throw problem;
  // truncate_prompt_tokens keeps the last k tokens (-1: the whole context).
  const keep = truncate === -1 ? maxModelLen : truncate !== null && truncate > 0 ? truncate : Infinity;
  const pairs = right.map((document, i) => {
    const query = left.length === 1 ? (left[0] ?? "") : (left[i] ?? "");
    const tokens = Math.min(pairTokens(query, document), keep);
    if (tokens > maxModelLen) {
      throw badRequest(
        `This model's maximum context length is ${maxModelLen} tokens. However, you requested ${tokens} tokens in the input for ${operation}. ` +
          "Please reduce the length of the input.",
      );
    }
    return { score: pairScore(query, document), tokens };
  });
  const seconds = (performance.now() - arrival) / 1000;
  for (const pair of pairs) {
    m.promptTokens += pair.tokens;
    m.success.stop++;
    observe(m.requestPromptTokens, pair.tokens);
    observe(m.e2e, seconds);
  }
  return pairs;
}

/** `sim_fault: "engine_error"`: vLLM's bare 500 of a dead engine, as for embeddings. */
function engineError(res: ServerResponse): void {
  res.writeHead(500, { "content-length": 0 });
  res.end();
}

/**
 * POST /rerank: `{"id":"rerank-…","model","usage":{"total_tokens"},"results":[…]}` with results
 * sorted by relevance (stable, so ties keep document order) and cut to `top_n` (0: all). The usage
 * counts every pair, not only those returned. RerankDocument has `text` and `multi_modal` (vLLM ≥ 0.10).
 */
export function handleRerank(state: EngineState, raw: unknown, res: ServerResponse, headerRequestId: string | undefined, arrival: number): void {
  const body = validateBody(rerankSchema, raw);
  const m = poolingModel(state, body.model, "Rerank (Score) API");
  if (body.sim_fault === "engine_error") return engineError(res);
  const pairs = scorePairs(m, [body.query], body.documents, body.truncate_prompt_tokens ?? null, "embedding generation", arrival);
  const topN = body.top_n !== undefined && body.top_n > 0 ? body.top_n : body.documents.length;
  const results = pairs
    .map((pair, index) => ({ index, document: { text: body.documents[index] ?? "", multi_modal: null }, relevance_score: pair.score }))
    .sort((a, b) => b.relevance_score - a.relevance_score)
    .slice(0, topN);
  const response = {
    id: `rerank-${headerRequestId || randomHex()}`,
    model: m.model.name,
    usage: { total_tokens: pairs.reduce((sum, p) => sum + p.tokens, 0) },
    results,
  };
  sendJson(res, 200, JSON.stringify(response));
}

/**
 * POST /score: a string `text_1` against a string or list `text_2` (1:N), or two lists of one length
 * (pairwise). `{"id":"score-…","object":"list","created","model","data":[…],"usage":{…}}`, data in
 * input order.
 */
export function handleScore(state: EngineState, raw: unknown, res: ServerResponse, headerRequestId: string | undefined, arrival: number): void {
  const body = validateBody(scoreSchema, raw);
  const m = poolingModel(state, body.model, "Score API");
  if (body.sim_fault === "engine_error") return engineError(res);
  const left = typeof body.text_1 === "string" ? [body.text_1] : body.text_1;
  const right = typeof body.text_2 === "string" ? [body.text_2] : body.text_2;
  const pairs = scorePairs(m, left, right, body.truncate_prompt_tokens ?? null, "score", arrival);
  const promptTokens = pairs.reduce((sum, p) => sum + p.tokens, 0);
  const response = {
    id: `score-${headerRequestId || randomHex()}`,
    object: "list",
    created: Math.floor(Date.now() / 1000),
    model: m.model.name,
    data: pairs.map((pair, index) => ({ index, object: "score", score: pair.score })),
    usage: { prompt_tokens: promptTokens, total_tokens: promptTokens, completion_tokens: 0, prompt_tokens_details: null },
  };
  sendJson(res, 200, JSON.stringify(response));
}

/** The pooling routes, for routes.ts (vLLM's /v1/rerank and /v1/score only log a warning and call these). */
export const POOLING_ROUTES = {
  "/rerank": handleRerank,
  "/v1/rerank": handleRerank,
  "/v2/rerank": handleRerank,
  "/score": handleScore,
  "/v1/score": handleScore,
} as const;
