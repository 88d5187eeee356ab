/**
 * The embeddings cache (docs/caching.md): each input of a batch is its own entry, so a batch with
 * some inputs cached sends only the others to the GPU (the upstream body rewritten to them) and the
 * answer is merged back in the client's order. An entry keeps the input's vector as base64 of its
 * little-endian float32 values (the engines' own base64 encoding, and a quarter of the size of a
 * float list in JSON) and the input's prompt tokens, for metering a later hit. `encoding_format`
 * is not part of the key: a vector cached from a float answer serves a base64 request and back,
 * the same float32 values either way (engines compute embeddings in float32, so a float list is
 * float32 values; JSON prints each as the shortest text that reads back as it, as vLLM's does).
 */

type Json = Record<string, unknown>;

/** One input's cached embedding: its prompt tokens and the vector, base64 of little-endian float32. */
export interface CachedEmbedding {
  t: number;
  e: string;
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A stored value read back: null unless it has the entry's shape. */
export function asCachedEmbedding(value: unknown): CachedEmbedding | null {
  if (!isObject(value) || typeof value.t !== "number" || typeof value.e !== "string") return null;
  return { t: value.t, e: value.e };
}

/** A vector as the engine wrote it (a float list or base64 text) in the stored form; null if it is neither. */
export function storedVector(vector: unknown): string | null {
  if (typeof vector === "string") return vector;
  if (!Array.isArray(vector) || !vector.every((v) => typeof v === "number")) return null;
  const bytes = new Uint8Array(vector.length * 4);
  const view = new DataView(bytes.buffer);
  vector.forEach((v: number, i) => view.setFloat32(i * 4, v, true));
  let binary = "";
  // In slices: String.fromCharCode takes its characters as arguments.
  for (let i = 0; i < bytes.length; i += 8192) binary += String.fromCharCode(...bytes.subarray(i, i + 8192));
  return btoa(binary);
}

/** A stored vector in the form the client asked for: base64 as stored, or the float list. */
export function clientVector(stored: string, base64: boolean): string | number[] {
  if (base64) return stored;
  const binary = atob(stored);
  const view = new DataView(new ArrayBuffer(binary.length));
  for (let i = 0; i < binary.length; i++) view.setUint8(i, binary.charCodeAt(i));
  const out = new Array<number>(binary.length >> 2);
  for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true);
  return out;
}

/** The upstream body for the inputs not cached: the client's fields, with only those inputs (in their order). */
export function missingInputsBody(body: Json, modelId: string, inputs: unknown[]): string {
  return JSON.stringify({ ...body, model: modelId, input: inputs });
}

/**
 * Splits a batch's prompt tokens (the engine reports one total) over its inputs: token-id inputs
 * count exactly, text shares the rest in proportion to its length (largest remainder, so the parts
 * add up to the total). A single input gets the total.
 */
export function splitTokens(total: number, inputs: unknown[]): number[] {
  if (inputs.length === 1) return [total];
  const exact = inputs.map((i) => (Array.isArray(i) ? i.length : null));
  const fixed = exact.reduce<number>((s, n) => s + (n ?? 0), 0);
  const rest = Math.max(0, total - fixed);
  const weights = inputs.map((i, k) => (exact[k] !== null ? 0 : typeof i === "string" ? Math.max(1, i.length) : 1));
  const weightSum = weights.reduce((s, w) => s + w, 0);
  if (weightSum === 0) return exact.map((n) => n ?? 0);
  const shares = weights.map((w) => (rest * w) / weightSum);
  const parts = shares.map((s, k) => (exact[k] !== null ? (exact[k] ?? 0) : Math.floor(s)));
  let left = rest - parts.reduce((s, p, k) => s + (exact[k] !== null ? 0 : p), 0);
  const order = shares.map((s, k) => ({ k, r: s - Math.floor(s) })).filter(({ k }) => exact[k] === null).sort((a, b) => b.r - a.r);
  for (const { k } of order) {
    if (left <= 0) break;
    parts[k] = (parts[k] ?? 0) + 1;
    left--;
  }
  return parts;
}

/** The engine's answer for the inputs sent: each one's vector in the order sent, and the prompt tokens. */
export function readUpstreamAnswer(bytes: Uint8Array, sent: number): { body: Json; vectors: unknown[]; promptTokens: number } | null {
  let body: unknown;
  try {
    body = JSON.parse(decoder.decode(bytes));
  } catch {
    return null;
  }
  if (!isObject(body) || !Array.isArray(body.data) || body.data.length !== sent) return null;
  const vectors: unknown[] = new Array<unknown>(sent);
  for (const item of body.data as unknown[]) {
    if (!isObject(item) || typeof item.index !== "number" || item.index < 0 || item.index >= sent) return null;
    if (typeof item.embedding !== "string" && !Array.isArray(item.embedding)) return null;
    vectors[item.index] = item.embedding;
  }
  if (vectors.some((v) => v === undefined)) return null;
  const usage = isObject(body.usage) ? body.usage : {};
  return { body, vectors, promptTokens: typeof usage.prompt_tokens === "number" ? usage.prompt_tokens : 0 };
}

/** The client's `data`: every input's vector at its own index. */
function dataOf(vectors: unknown[]): Json[] {
  return vectors.map((embedding, index) => ({ index, object: "embedding", embedding }));
}

/**
 * A batch answered partly from the cache: the engine's body (id, usage: the GPU's work only) with
 * `data` holding every input, cached or not, in the client's order.
 */
export function mergedAnswer(upstream: Json, vectors: unknown[]): Uint8Array {
  return encoder.encode(JSON.stringify({ ...upstream, data: dataOf(vectors) }));
}

/** A batch answered wholly from the cache: vLLM's shape, with no GPU tokens in `usage`. */
export function cachedAnswer(requestId: string, modelId: string, vectors: unknown[], now = Date.now()): Uint8Array {
  return encoder.encode(
    JSON.stringify({
      id: `embd-${requestId}`,
      object: "list",
      created: Math.floor(now / 1000),
      model: modelId,
      data: dataOf(vectors),
      usage: { prompt_tokens: 0, total_tokens: 0, completion_tokens: 0, prompt_tokens_details: null },
    }),
  );
}
