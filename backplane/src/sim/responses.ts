import type { IncomingMessage, ServerResponse } from "node:http";
import type { EngineState } from "./engine.ts";
import { badRequest, modelNotFound, SimHttpError, sendError, sendJson, validationError } from "./errors.ts";
import { handleGeneration, randomHex } from "./generate.ts";
import { lookupModel, servedName } from "./lora.ts";
import type { ModelMetrics } from "./metrics.ts";
import { type ChatMessage, parseResponsesRequest, type ResponsesBody, toChatBody, toChatMessages } from "./responses-request.ts";
import { backgroundHooks, clientHooks, ResponsesRun, type RunEnd, SSE_HEADERS } from "./responses-run.ts";
import { EventLog, ResponsesStore, type StoredResponse, storeEnabled } from "./responses-store.ts";
import { createEventConverter, invalidRequestBody, notFoundBody, type ResponseBase, responseObject } from "./responses-wire.ts";
import type { ChatBody } from "./schemas.ts";
import { renderChat } from "./tokenizer.ts";

/**
 * The OpenAI Responses API as vLLM serves it (vllm/entrypoints/openai/responses): a Responses
 * request is converted into chat messages and run as a chat generation of the same engine
 * (queue, timing, metrics, aborts); its output becomes Response events and objects. Text only:
 * tools are accepted and never called. See docs/simulator.md.
 */

/** vLLM's 400 for `background: true` without the store. */
const BACKGROUND_NEEDS_STORE =
  "This vLLM engine does not support `store=True` and therefore does not support the background mode. " +
  "To enable these features, set the environment variable `VLLM_ENABLE_RESPONSES_API_STORE=1` when launching the vLLM server.";

const stores = new WeakMap<EngineState, ResponsesStore>();

/**
 * The engine's store, made with its first Responses request. Like vLLM, which reads
 * VLLM_ENABLE_RESPONSES_API_STORE once when it builds its Responses handler, the variable is
 * read once per engine; the simulator's options have no flag for it.
 */
function storeOf(state: EngineState): ResponsesStore {
  let store = stores.get(state);
  if (!store) {
    store = new ResponsesStore(storeEnabled(process.env.VLLM_ENABLE_RESPONSES_API_STORE));
    stores.set(state, store);
  }
  return store;
}

/** An omitted model is the first generator; a pooling model has no Responses handler in vLLM. */
function responsesModel(state: EngineState, name: string | null): ModelMetrics {
  const all = [...state.metrics.values()];
  const found = name === null ? (all.find((m) => m.model.kind === "generate") ?? all[0]) : lookupModel(state, name);
  if (!found) throw modelNotFound(name ?? "");
  if (found.model.kind !== "generate") throw badRequest("The model does not support Responses API");
  return found;
}

/** ResponsesResponse.from_request: what the object echoes, with the sampling defaults applied. */
function responseBase(body: ResponsesBody, id: string, model: string, maxOutputTokens: number): ResponseBase {
  const logprobs = body.include?.includes("message.output_text.logprobs") ?? false;
  return {
    id,
    created_at: Math.floor(Date.now() / 1000),
    instructions: body.instructions ?? null,
    metadata: body.metadata ?? null,
    model,
    parallel_tool_calls: body.parallel_tool_calls ?? true,
    temperature: body.temperature ?? 1,
    tool_choice: body.tool_choice ?? "auto",
    tools: body.tools ?? [],
    top_p: body.top_p ?? 1,
    background: body.background ?? false,
    max_output_tokens: maxOutputTokens,
    max_tool_calls: body.max_tool_calls ?? null,
    previous_response_id: body.previous_response_id ?? null,
    reasoning: body.reasoning ?? null,
    service_tier: body.service_tier ?? "auto",
    text: body.text ?? null,
    top_logprobs: logprobs ? (body.top_logprobs ?? 0) : null,
    truncation: body.truncation ?? "disabled",
    user: body.user ?? null,
  };
}

/** Streams a log's events after `after` to a client; the client leaving does not stop the generation. */
function followLog(res: ServerResponse, log: EventLog, after: number): void {
  res.writeHead(200, SSE_HEADERS);
  const stop = log.follow(
    after,
    (sse) => res.write(sse),
    () => res.end(),
  );
  res.on("close", stop);
}

/** A validated request, ready to run. */
interface Prepared {
  id: string;
  base: ResponseBase;
  messages: ChatMessage[];
  chat: ChatBody;
  stream: boolean;
}

/**
 * POST /v1/responses, in vLLM's order: body validation, model, the store/background check,
 * previous_response_id, input conversion, prompt length, then the chat generation (whose own
 * checks reject bad sampling values). `max_output_tokens` is clamped to the context left.
 */
export function handleResponses(state: EngineState, raw: unknown, res: ServerResponse, headerRequestId: string | undefined, arrival: number): void {
  const body = parseResponsesRequest(raw);
  const metrics = responsesModel(state, body.model ?? null);
  const store = storeOf(state);
  if (body.background && !store.enabled) return sendJson(res, 400, invalidRequestBody(BACKGROUND_NEEDS_STORE, 400));
  const previousId = body.previous_response_id ?? null;
  const previous = previousId === null ? null : store.get(previousId);
  if (previousId !== null && !previous) return sendJson(res, 404, notFoundBody(previousId));

  const messages = toChatMessages(body, previous ?? null);
  const { maxModelLen } = metrics.model;
  const name = servedName(state, body.model ?? null, metrics);
  const prompt = renderChat(messages).tokens;
  if (prompt >= maxModelLen) {
    return sendJson(res, 400, invalidRequestBody(`The engine prompt length ${prompt} exceeds the max_model_len ${maxModelLen}. Please reduce prompt.`, 400));
  }
  const limit = Math.min(body.max_output_tokens ?? Infinity, maxModelLen - prompt);
  const id = body.request_id ?? `resp_${randomHex()}`;
  const prepared: Prepared = { id, base: responseBase(body, id, name, limit), messages, chat: toChatBody(body, name, messages, limit, id), stream: body.stream === true };
  const generate = (run: ResponsesRun): void => handleGeneration(state, "chat", prepared.chat, run, headerRequestId, arrival);
  if (body.background) startBackground(store, prepared, res, generate);
  // `store: true` (the default) is silently ignored without the store, as in vLLM.
  else startSynchronous(store.enabled && body.store !== false ? store : null, prepared, res, generate);
}

/**
 * A background response: stored at once as "queued" and answered with that object (or, when
 * streamed, with its events as they come); it runs with no client, until done or cancelled.
 */
function startBackground(store: ResponsesStore, prepared: Prepared, res: ServerResponse, generate: (run: ResponsesRun) => void): void {
  const { id, base, messages, stream } = prepared;
  const queued = responseObject(base, "queued", [], null);
  const entry: StoredResponse = { response: queued, messages, log: stream ? new EventLog() : null, cancel: null };
  const run = new ResponsesRun(res.req, createEventConverter(base, stream), backgroundHooks(entry));
  entry.cancel = () => run.abort();
  store.put(id, entry);
  // Serialised now: a zero-delay generation may finish inside generate().
  const answer = JSON.stringify(queued);
  try {
    generate(run);
  } catch (error) {
    store.drop(id, entry);
    throw error;
  }
  if (entry.log) followLog(res, entry.log, -1);
  else sendJson(res, 200, answer);
}

/** A synchronous response, streamed or not; kept in `store` (when given) once it has finished. */
function startSynchronous(store: ResponsesStore | null, prepared: Prepared, res: ServerResponse, generate: (run: ResponsesRun) => void): void {
  const { id, base, messages, stream } = prepared;
  const entry: StoredResponse = { response: null, messages, log: null, cancel: null };
  store?.put(id, entry);
  const settle = (outcome: RunEnd): void => {
    if (outcome.kind === "done") entry.response = outcome.response;
    else store?.drop(id, entry);
  };
  const run = new ResponsesRun(res.req, createEventConverter(base, stream), clientHooks(res, stream, settle));
  // A client that goes away aborts its generation (vLLM's with_cancellation).
  res.on("close", () => run.abort());
  try {
    generate(run);
  } catch (error) {
    store?.drop(id, entry);
    throw error;
  }
}

/** The last value of a query parameter, as Starlette reads it. */
function queryValue(query: URLSearchParams, name: string): string | undefined {
  return query.getAll(name).at(-1);
}

const TRUE = new Set(["1", "on", "t", "true", "y", "yes"]);
const FALSE = new Set(["0", "off", "f", "false", "n", "no"]);

/** FastAPI's query parameters of retrieve: `stream: bool = False`, `starting_after: int | None`. */
function retrieveQuery(req: IncomingMessage): { stream: boolean; after: number } {
  const query = new URL(req.url ?? "/", "http://sim").searchParams;
  const stream = queryValue(query, "stream")?.toLowerCase();
  const after = queryValue(query, "starting_after");
  if (stream !== undefined && !TRUE.has(stream) && !FALSE.has(stream)) {
    throw validationError([{ type: "bool_parsing", loc: ["query", "stream"], msg: "Input should be a valid boolean, unable to interpret input" }]);
  }
  if (after !== undefined && !/^[+-]?\d+$/.test(after)) {
    throw validationError([{ type: "int_parsing", loc: ["query", "starting_after"], msg: "Input should be a valid integer, unable to parse string as an integer" }]);
  }
  return { stream: stream !== undefined && TRUE.has(stream), after: after === undefined ? -1 : Number(after) };
}

/**
 * GET /v1/responses/{id}: the stored object, or with `stream=true` the events of a background
 * stream after `starting_after`, then the live ones until it ends. vLLM keeps events only for
 * background streams; for any other response it raises "Unknown response_id" (inside the stream
 * there, after the 200; the simulator answers 400 before any byte).
 */
function handleRetrieve(state: EngineState, req: IncomingMessage, res: ServerResponse, id: string): void {
  const { stream, after } = retrieveQuery(req);
  const entry = storeOf(state).get(id);
  if (!entry) return sendJson(res, 404, notFoundBody(id));
  if (!stream) return sendJson(res, 200, JSON.stringify(entry.response));
  if (!entry.log) return sendError(res, badRequest(`Unknown response_id: ${id}`));
  followLog(res, entry.log, after);
}

/** POST /v1/responses/{id}/cancel: only a queued or running background response; it stops generating. */
function handleCancel(state: EngineState, res: ServerResponse, id: string): void {
  const entry = storeOf(state).get(id);
  if (!entry) return sendJson(res, 404, notFoundBody(id));
  const response = entry.response;
  if (response.status !== "queued" && response.status !== "in_progress") {
    return sendJson(res, 400, invalidRequestBody("Cannot cancel a synchronous response.", 400));
  }
  response.status = "cancelled";
  entry.cancel?.();
  sendJson(res, 200, JSON.stringify(response));
}

const BY_ID = /^\/v1\/responses\/([^/]+)(\/cancel)?$/;

/**
 * Routes GET /v1/responses/{id} and POST /v1/responses/{id}/cancel; returns false for any other
 * path. Another method on those paths is Starlette's 405 (so DELETE /v1/responses/{id}, which
 * vLLM does not serve, is a 405; /v1/responses/{id}/input_items matches nothing and is a 404).
 */
export function routeResponseById(state: EngineState, req: IncomingMessage, res: ServerResponse, path: string): boolean {
  const match = BY_ID.exec(path);
  if (!match) return false;
  req.resume();
  const cancel = match[2] !== undefined;
  if (req.method !== (cancel ? "POST" : "GET")) {
    sendJson(res, 405, JSON.stringify({ detail: "Method Not Allowed" }));
    return true;
  }
  let id = match[1] ?? "";
  try {
    id = decodeURIComponent(id);
  } catch {
    // Kept as sent: Starlette leaves a malformed escape undecoded.
  }
  try {
    if (cancel) handleCancel(state, res, id);
    else handleRetrieve(state, req, res, id);
  } catch (error) {
    sendError(res, error instanceof SimHttpError ? error : new SimHttpError(500, "InternalServerError", String(error)));
  }
  return true;
}
