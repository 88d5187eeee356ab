/**
 * Ollama's embedding API (docs.ollama.com/api/embed; ollama server/routes.go EmbedHandler and
 * EmbeddingsHandler) in terms of OpenAI's `/v1/embeddings`: the request translated into an OpenAI
 * body, the engine's OpenAI answer translated back. Pure functions; routes.ts serves them.
 */
import { ApiError } from "../errors.ts";

/** An Ollama embedding request as validated: the model as the client named it, and its inputs. */
export interface OllamaEmbedRequest {
  model: string;
  /** The texts to embed; empty when the client sent none (Ollama then answers without running the model). */
  inputs: string[];
  /** The OpenAI `/v1/embeddings` body to serve it with; null when there is nothing to embed. */
  openai: string | null;
}

/** What the engine's OpenAI answer carries that Ollama's shapes need. */
export interface EmbeddingsAnswer {
  vectors: number[][];
  promptTokens: number;
}

type Json = Record<string, unknown>;

function bodyOf(raw: string): Json {
  if (raw.trim() === "") throw new ApiError("invalid_json", "missing request body");
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new ApiError("invalid_json", "The request body is not valid JSON: send a JSON object such as {\"model\":\"…\",\"input\":\"…\"}.");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new ApiError("invalid_json", "The request body must be a JSON object.");
  return parsed as Json;
}

function modelOf(body: Json): string {
  if (body.model === undefined || body.model === null || body.model === "") throw new ApiError("missing_field", "model is required", { param: "model" });
  if (typeof body.model !== "string") throw new ApiError("invalid_value", "model must be a string", { param: "model" });
  return body.model;
}

/**
 * `POST /api/embed`: `{model, input: string | string[], truncate?, dimensions?, options?, keep_alive?}`.
 * `truncate` (Ollama's default true) cuts each input to the model's context: vLLM's
 * `truncate_prompt_tokens: -1` (vLLM keeps the end of the input, where Ollama keeps the start);
 * `truncate: false` lets an input longer than the context fail with a 400 as in Ollama.
 * `dimensions` is passed on (vLLM cuts a matryoshka embedding and normalises it). `options` and
 * `keep_alive` steer Ollama's own runner (sampling options, how long it stays loaded): the engines
 * behind the gateway manage their models themselves, so both are accepted and ignored.
 * `servedName` maps the client's model name to the one the OpenAI body names (routes.ts: Ollama's
 * implicit `:latest` tag); `model` stays the client's, which Ollama's answer echoes.
 */
export function translateEmbed(raw: string, servedName: (model: string) => string = (m) => m): OllamaEmbedRequest {
  const body = bodyOf(raw);
  const model = modelOf(body);
  const input = body.input;
  let inputs: string[];
  if (input === undefined || input === null) inputs = [];
  else if (typeof input === "string") inputs = input === "" ? [] : [input];
  else if (Array.isArray(input) && input.every((v): v is string => typeof v === "string")) inputs = input;
  else throw new ApiError("invalid_value", "invalid input type: input must be a string or an array of strings", { param: "input" });
  if (body.truncate !== undefined && body.truncate !== null && typeof body.truncate !== "boolean") {
    throw new ApiError("invalid_value", "truncate must be true or false", { param: "truncate" });
  }
  const dimensions = body.dimensions;
  if (dimensions !== undefined && dimensions !== null && (typeof dimensions !== "number" || !Number.isInteger(dimensions) || dimensions < 1)) {
    throw new ApiError("invalid_value", "dimensions must be a positive integer", { param: "dimensions" });
  }
  if (inputs.length === 0) return { model, inputs, openai: null };
  const openai: Json = { model: servedName(model), input: inputs, encoding_format: "float" };
  if (typeof dimensions === "number") openai.dimensions = dimensions;
  if (body.truncate !== false) openai.truncate_prompt_tokens = -1;
  return { model, inputs, openai: JSON.stringify(openai) };
}

/** `POST /api/embeddings` (Ollama's older route): `{model, prompt, options?, keep_alive?}`; an empty prompt embeds nothing. */
export function translateEmbeddings(raw: string, servedName: (model: string) => string = (m) => m): OllamaEmbedRequest {
  const body = bodyOf(raw);
  const model = modelOf(body);
  const prompt = body.prompt;
  if (prompt !== undefined && prompt !== null && typeof prompt !== "string") throw new ApiError("invalid_value", "prompt must be a string", { param: "prompt" });
  if (!prompt) return { model, inputs: [], openai: null };
  return { model, inputs: [prompt], openai: JSON.stringify({ model: servedName(model), input: prompt, encoding_format: "float" }) };
}

/** Reads the float vectors (in input order) and prompt tokens of an OpenAI embeddings answer. */
export function readEmbeddingsAnswer(body: unknown): EmbeddingsAnswer {
  const answer = (typeof body === "object" && body !== null ? body : {}) as { data?: unknown; usage?: { prompt_tokens?: unknown } };
  if (!Array.isArray(answer.data)) throw new ApiError("upstream_error", "The GPU node's embeddings answer has no data list. Retry the request.");
  const items = (answer.data as { index?: unknown; embedding?: unknown }[]).map((d, i) => ({ index: typeof d.index === "number" ? d.index : i, embedding: d.embedding }));
  items.sort((a, b) => a.index - b.index);
  const vectors = items.map((d) => {
    if (!Array.isArray(d.embedding) || !d.embedding.every((v) => typeof v === "number")) {
      throw new ApiError("upstream_error", "The GPU node's embeddings answer is not a list of float vectors. Retry the request.");
    }
    return d.embedding;
  });
  const promptTokens = typeof answer.usage?.prompt_tokens === "number" ? answer.usage.prompt_tokens : 0;
  return { vectors, promptTokens };
}

/** Ollama's `/api/embed` answer; `model` is the name the client sent, as Ollama echoes it. Durations in nanoseconds. */
export function embedResponse(model: string, answer: EmbeddingsAnswer | null, totalMs: number): Record<string, unknown> {
  if (answer === null) return { model, embeddings: [] };
  return { model, embeddings: answer.vectors, total_duration: Math.round(totalMs * 1e6), load_duration: 0, prompt_eval_count: answer.promptTokens };
}

/** Ollama's `/api/embeddings` answer. */
export function embeddingsResponse(answer: EmbeddingsAnswer | null): { embedding: number[] } {
  return { embedding: answer?.vectors[0] ?? [] };
}
