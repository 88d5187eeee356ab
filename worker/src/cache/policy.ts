/**
 * What the caches (docs/caching.md) may serve and under which key: pure computation on the body
 * validate.ts already parsed, so a request that is not cacheable pays no Redis round trip.
 */
import type { Endpoint } from "../proxy/validate.ts";

type Json = Record<string, unknown>;

/** What the client's `Cache-Control` allows: read and store (default), store only (`no-cache`), or neither (`no-store`). */
export interface CacheDirectives {
  read: boolean;
  store: boolean;
}

/** Reads `Cache-Control` as RFC 9111 §5.2.1 defines it for requests: `no-store` wins over `no-cache`. */
export function cacheDirectives(header: string | undefined): CacheDirectives {
  if (!header) return { read: true, store: true };
  const names = header.split(",").map((d) => d.trim().split("=")[0]?.trim().toLowerCase() ?? "");
  if (names.includes("no-store")) return { read: false, store: false };
  if (names.includes("no-cache")) return { read: false, store: true };
  return { read: true, store: true };
}

/**
 * Fields that never change an answer, left out of the key: how it is delivered (`stream`,
 * `stream_options`: a streamed and a non-streamed request share one entry) and who asked (`user`,
 * OpenAI's end-user id; `metadata`; `request_id`, which the gateway sets itself). `model` is keyed
 * as the catalogue id it resolved to, so an alias shares its model's entries.
 */
const NOT_KEYED = new Set(["stream", "stream_options", "user", "metadata", "request_id", "model"]);

/**
 * Why a chat or completions request is not cacheable (null: it is). Deterministic means
 * `temperature: 0` or a `seed` (the engine then samples the same tokens for the same request; n > 1
 * with a seed is fine). Not cached: tools the model may call (`tools` or legacy `functions`, unless
 * `tool_choice`/`function_call` is "none"), since a tool call acts on the world and its result
 * differs between calls; `logprobs`, whose per-token values a replay would have to carry chunk by
 * chunk (kept simple: such requests go to the GPU); `echo`/`prompt_logprobs`, for the same reason;
 * and `stream_options.continuous_usage_stats`, whose chunks carry running usage a replay lacks.
 */
export function responseUncacheable(body: Json): string | null {
  const seeded = typeof body.seed === "number" && Number.isInteger(body.seed);
  if (body.temperature !== 0 && !seeded) return "not_deterministic";
  const toolsGiven = (Array.isArray(body.tools) && body.tools.length > 0) || (Array.isArray(body.functions) && body.functions.length > 0);
  if (toolsGiven && body.tool_choice !== "none" && body.function_call !== "none") return "tools";
  const logprobs = body.logprobs;
  if ((logprobs !== undefined && logprobs !== null && logprobs !== false) || body.echo === true || (body.prompt_logprobs !== undefined && body.prompt_logprobs !== null)) return "logprobs";
  const options = body.stream_options;
  if (typeof options === "object" && options !== null && (options as Json).continuous_usage_stats === true) return "continuous_usage";
  return null;
}

/** JSON with every object's keys sorted (arrays keep their order): equal requests give equal text. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? "null" : canonicalJson(v))).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const obj = value as Json;
    const keys = Object.keys(obj)
      .filter((k) => obj[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** Lower-case hex SHA-256 of `text`: no prompt ever appears in a Redis key. */
export async function sha256Hex(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  let hex = "";
  for (const byte of digest) hex += byte.toString(16).padStart(2, "0");
  return hex;
}

/** The request body without the fields that do not change the answer (NOT_KEYED, and `extra` ones). */
function keyedFields(body: Json, extra: readonly string[] = []): Json {
  const out: Json = {};
  for (const [k, v] of Object.entries(body)) if (!NOT_KEYED.has(k) && !extra.includes(k)) out[k] = v;
  return out;
}

/** Redis key of a cached chat or completions answer: a hash of tenant, endpoint, model id and canonical request. */
export async function responseKey(prefix: string, tenantId: string, endpoint: Endpoint, modelId: string, body: Json): Promise<string> {
  return `${prefix}cache:r:${await sha256Hex(`r1\u0000${tenantId}\u0000${endpoint}\u0000${modelId}\u0000${canonicalJson(keyedFields(body))}`)}`;
}

/** A batch's inputs one by one: a string or a token-id array is one input; a list of either is a batch. */
export function embeddingInputs(input: unknown): unknown[] {
  if (typeof input === "string") return [input];
  if (Array.isArray(input) && input.length > 0 && input.every((t) => typeof t === "number")) return [input];
  return Array.isArray(input) ? input : [input];
}

/**
 * Redis keys of each input's embedding: a hash of tenant, model id, every other field that shapes
 * the vector (dimensions, truncate_prompt_tokens, normalize, …: all fields but `input`,
 * `encoding_format` (the same vector either way, cache/embeddings.ts) and NOT_KEYED, so an unknown
 * engine extra keys too) and the input itself. Text and token ids never share a key.
 */
export async function embeddingKeys(prefix: string, tenantId: string, modelId: string, body: Json, inputs: unknown[]): Promise<string[]> {
  const shared = `e1\u0000${tenantId}\u0000${modelId}\u0000${canonicalJson(keyedFields(body, ["input", "encoding_format"]))}\u0000`;
  return Promise.all(inputs.map(async (input) => `${prefix}cache:e:${await sha256Hex(shared + JSON.stringify(input))}`));
}
