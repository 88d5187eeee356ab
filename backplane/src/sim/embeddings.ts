import type { ServerResponse } from "node:http";
import { type EngineState, resolveModel } from "./engine.ts";
import { priorityRefusal } from "./generate.ts";
import { badRequest, sendJson, validationError } from "./errors.ts";
import { randomHex } from "./generate.ts";
import { observe } from "./metrics.ts";
import { type EmbeddingBody, embeddingSchema, validateBody } from "./schemas.ts";
import { mixSeed, mulberry32 } from "./textgen.ts";
import { countPromptTokens, fnv1a, hashTokenIds, renderChat } from "./tokenizer.ts";

interface EmbeddingInput {
  tokens: number;
  hash: number;
}

/**
 * A deterministic vector for an input: Box-Muller normals from a PRNG seeded by the input's
 * hash (so directions are uniform on the sphere), cut to `dimensions` and then normalised,
 * the way vLLM handles matryoshka `dimensions`. Values are float32, as the model returns them.
 */
export function embeddingVector(input: EmbeddingInput, full: number, dimensions: number, normalize: boolean): number[] {
  const random = mulberry32(mixSeed(input.hash, input.tokens, 0));
  const out: number[] = new Array<number>(dimensions);
  for (let i = 0; i < dimensions; i += 2) {
    const u1 = (random() + 1) / 4294967297;
    const u2 = random() / 4294967296;
    const r = Math.sqrt(-2 * Math.log(u1));
    out[i] = r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < dimensions) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
  let norm = 0;
  for (let i = 0; i < dimensions; i++) norm += (out[i] ?? 0) ** 2;
  const scale = normalize ? 1 / Math.sqrt(norm || 1) : 1 / Math.sqrt(full);
  for (let i = 0; i < dimensions; i++) out[i] = Math.fround((out[i] ?? 0) * scale);
  return out;
}

/** Base64 of little-endian float32 values, as vLLM's encoding_format="base64". */
export function float32Base64(values: readonly number[]): string {
  const view = new DataView(new ArrayBuffer(values.length * 4));
  values.forEach((v, i) => view.setFloat32(i * 4, v, true));
  return Buffer.from(view.buffer).toString("base64");
}

function inputsOf(body: EmbeddingBody): EmbeddingInput[] {
  const { input, messages } = body;
  if (input === undefined) {
    const rendered = renderChat(messages ?? []);
    return [{ tokens: rendered.tokens, hash: rendered.hash }];
  }
  const text = (s: string): EmbeddingInput => ({ tokens: countPromptTokens(s), hash: fnv1a(s) });
  const ids = (list: readonly number[]): EmbeddingInput => ({ tokens: list.length, hash: hashTokenIds(list) });
  if (typeof input === "string") return [text(input)];
  const list: readonly unknown[] = input;
  if (list.length === 0) throw badRequest("Input list cannot be empty.");
  if (list.every((v): v is string => typeof v === "string")) return list.map(text);
  if (list.every((v): v is number => typeof v === "number")) return [ids(list)];
  return list.map((v) => ids(Array.isArray(v) ? v.filter((x): x is number => typeof x === "number") : []));
}

function parse(raw: unknown): EmbeddingBody {
  const body = validateBody(embeddingSchema, raw);
  if (body.input === undefined && body.messages === undefined) {
    throw validationError([{ type: "missing", loc: ["body", "input"], msg: "Field required" }]);
  }
  return body;
}

/** POST /v1/embeddings (EmbeddingCompletionRequest, or the chat form with `messages`). */
export function handleEmbeddings(state: EngineState, raw: unknown, res: ServerResponse, headerRequestId: string | undefined, arrival: number): void {
  const body = parse(raw);
  const m = resolveModel(state, body.model ?? null, "embedding");
  const { maxModelLen } = m.model;
  const full = state.options.embeddingDimensions;
  const truncate = body.truncate_prompt_tokens ?? null;
  if (truncate !== null && truncate > maxModelLen) {
    throw badRequest(`truncate_prompt_tokens value (${truncate}) is greater than max_model_len (${maxModelLen}). Please, select a smaller truncation size.`);
  }
  const inputs = inputsOf(body).map((input) => {
    // truncate_prompt_tokens keeps the last k tokens (-1: the whole context).
    const keep = truncate === -1 ? maxModelLen : truncate !== null && truncate > 0 ? truncate : Infinity;
    const tokens = Math.min(input.tokens, keep);
    if (tokens > maxModelLen) {
      throw badRequest(
        `This model's maximum context length is ${maxModelLen} tokens. However, you requested ${tokens} tokens in the input for ` +
          "embedding generation. Please reduce the length of the input.",
      );
    }
    return { tokens, hash: input.hash };
  });
  const dimensions = body.dimensions ?? full;
  if (dimensions < 1) throw badRequest("Dimensions must be greater than 0");
  if (dimensions > full) throw badRequest(`Dimensions must be less than or equal to ${full}`);
  // Pooling requests reach add_request too: an fcfs engine refuses a non-zero priority.
  const refused = priorityRefusal(state.options.schedulingPolicy, body.priority ?? 0);
  if (refused !== null) throw badRequest(refused);
  if (body.sim_fault === "engine_error") {
    res.writeHead(500, { "content-length": 0 });
    res.end();
    return;
  }
  const base64 = body.encoding_format === "base64";
  const data = inputs.map((input, index) => {
    const vector = embeddingVector(input, full, dimensions, body.normalize !== false);
    return { index, object: "embedding", embedding: base64 ? float32Base64(vector) : vector };
  });
  const promptTokens = inputs.reduce((sum, i) => sum + i.tokens, 0);
  const response = {
    id: `embd-${headerRequestId || randomHex()}`,
    object: "list",
    created: Math.floor(Date.now() / 1000),
    model: m.model.name,
    data,
    usage: { prompt_tokens: promptTokens, total_tokens: promptTokens, completion_tokens: 0, prompt_tokens_details: null },
  };
  m.promptTokens += promptTokens;
  m.success.stop++;
  observe(m.requestPromptTokens, promptTokens);
  const text = JSON.stringify(response);
  // A real engine spends one forward pass on the batch (embedMs); the answer is the same either way.
  const ms = state.options.embedMs;
  if (ms <= 0) {
    observe(m.e2e, (performance.now() - arrival) / 1000);
    sendJson(res, 200, text);
    return;
  }
  setTimeout(() => {
    observe(m.e2e, (performance.now() - arrival) / 1000);
    if (!res.destroyed) sendJson(res, 200, text);
  }, ms);
}
