/**
 * Ollama's embedding routes, `POST /api/embed` and `POST /api/embeddings`, for clients that speak
 * Ollama's native API (its SDKs, LangChain's OllamaEmbeddings, …) with a gateway key as their Bearer
 * token. Each is translated into an OpenAI embeddings request and served by the inference path
 * (`serveProxy`), so scopes, limits, budgets, routing, caches and metering apply as on
 * `/v1/embeddings`; the answer is translated back. Model names resolve through the catalogue's
 * aliases (`nomic-embed-text:latest`), with Ollama's implicit `:latest` tag. Errors are Ollama's `{"error":"…"}` (errors.ts, app.ts).
 */
import type { Context } from "hono";
import type { AppEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { readBody, serveProxy } from "../routes/proxy.ts";
import { catalogueModel, keyAllows } from "../routing/aliases.ts";
import { embeddingsResponse, embedResponse, readEmbeddingsAnswer, translateEmbed, translateEmbeddings, type EmbeddingsAnswer, type OllamaEmbedRequest } from "./translate.ts";

const utf8 = new TextDecoder();
const encoder = new TextEncoder();

/** The inner answer's headers an Ollama client still gets: the request id, the gateway's own (`x-switchyard-*`: node, region, cache) and rate limits. */
function keptHeaders(from: Headers): Headers {
  const headers = new Headers({ "content-type": "application/json; charset=utf-8" });
  for (const [name, value] of from) {
    if (name === "x-request-id" || name === "retry-after" || name.startsWith("x-switchyard-") || name.startsWith("x-ratelimit-")) headers.set(name, value);
  }
  return headers;
}

/**
 * The name to serve a client's model name under, by Ollama's naming rule: a name without a tag means
 * its `:latest` tag (ollama types/model ParseName), so `nomic-embed-text` finds a catalogue model or
 * alias `nomic-embed-text:latest`, and `sim-embed:latest` finds `sim-embed`. A name the catalogue
 * knows as it is is kept; one it knows under neither spelling is kept too (and answered 404).
 */
function servedName(c: Context<AppEnv>, name: string): string {
  const snapshot = c.get("routing").snapshot;
  if (catalogueModel(snapshot, name)) return name;
  const tagged = name.slice(name.lastIndexOf("/") + 1).includes(":");
  const other = !tagged ? `${name}:latest` : name.endsWith(":latest") ? name.slice(0, -":latest".length) : null;
  return other !== null && catalogueModel(snapshot, other) ? other : name;
}

/**
 * A request with nothing to embed is answered without running the model, as Ollama does, after the
 * checks the inference path would make: the key's scope, the model (by id or alias) and its kind.
 */
function checkModel(c: Context<AppEnv>, name: string): void {
  const identity = c.get("identity");
  if (!identity.scopes.includes("embeddings")) throw new ApiError("permission_denied", `This API key lacks the 'embeddings' scope needed for ${c.req.path}.`);
  const model = catalogueModel(c.get("routing").snapshot, servedName(c, name));
  if (!model || !keyAllows(identity.allowedModels, model)) {
    throw new ApiError("model_not_found", `The model '${name}' does not exist or you do not have access to it. GET /v1/models lists the models this key may use.`, { param: "model" });
  }
  if (model.kind !== "embedding") throw new ApiError("invalid_value", `The model '${name}' is ${model.kind === "chat" ? "a chat" : `an ${model.kind}`} model and cannot serve ${c.req.path}.`, { param: "model" });
}

type Served = { answer: EmbeddingsAnswer | null; headers: Headers } | { failed: Response };

/** Serves a translated request through the inference path and reads its answer. */
async function serve(c: Context<AppEnv>, request: OllamaEmbedRequest): Promise<Served> {
  if (request.openai === null) {
    checkModel(c, request.model);
    return { answer: null, headers: keptHeaders(new Headers({ "x-request-id": c.get("deps").requestId })) };
  }
  const res = await serveProxy(c, "embeddings", new Uint8Array(encoder.encode(request.openai)).buffer);
  const headers = keptHeaders(res.headers);
  let body: unknown;
  try {
    body = JSON.parse(utf8.decode(await res.arrayBuffer()));
  } catch {
    throw new ApiError("upstream_error", "The GPU node's embeddings answer is not JSON. Retry the request.");
  }
  if (res.status >= 400) {
    // An error answered rather than thrown: its message, in Ollama's shape, with its status.
    const error = (body as { error?: { message?: unknown } | string } | null)?.error;
    const message = typeof error === "string" ? error : typeof error?.message === "string" ? error.message : `The request failed with status ${res.status}.`;
    return { failed: new Response(JSON.stringify({ error: message }), { status: res.status, headers }) };
  }
  return { answer: readEmbeddingsAnswer(body), headers };
}

/** `POST /api/embed`: `{model, input, truncate?, dimensions?}` → `{model, embeddings, total_duration, load_duration, prompt_eval_count}`. */
export async function ollamaEmbed(c: Context<AppEnv>): Promise<Response> {
  const request = translateEmbed(utf8.decode(await readBody(c, "embeddings")), (name) => servedName(c, name));
  const served = await serve(c, request);
  if ("failed" in served) return served.failed;
  const deps = c.get("deps");
  return new Response(JSON.stringify(embedResponse(request.model, served.answer, Date.now() - deps.startedAt)), { status: 200, headers: served.headers });
}

/** `POST /api/embeddings` (Ollama's older route): `{model, prompt}` → `{embedding}`. */
export async function ollamaEmbeddings(c: Context<AppEnv>): Promise<Response> {
  const request = translateEmbeddings(utf8.decode(await readBody(c, "embeddings")), (name) => servedName(c, name));
  const served = await serve(c, request);
  if ("failed" in served) return served.failed;
  return new Response(JSON.stringify(embeddingsResponse(served.answer)), { status: 200, headers: served.headers });
}
