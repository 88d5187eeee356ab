import type { IncomingMessage, ServerResponse } from "node:http";
import { fedattnRoute } from "../fedattn/sim-routes.ts";
import { AUDIO_ROUTES } from "./audio.ts";
import { handleEmbeddings } from "./embeddings.ts";
import type { EngineState } from "./engine.ts";
import { SimHttpError, sendError, sendJson, validationError } from "./errors.ts";
import { handleGeneration, randomHex } from "./generate.ts";
import { loraCards, loraRoute } from "./lora.ts";
import { handleCountTokens, handleMessages, sendMessagesError } from "./messages.ts";
import { renderMetrics } from "./metrics.ts";
import { POOLING_ROUTES } from "./pooling.ts";
import { handleResponses, routeResponseById } from "./responses.ts";
import { TOKENIZE_ROUTES } from "./tokenize.ts";

/** The vLLM version the simulator answers /version with. */
export const SIM_VLLM_VERSION = "0.11.0";

type PostHandler = (state: EngineState, body: unknown, res: ServerResponse, requestId: string | undefined, arrival: number) => void;

const POST_ROUTES: Record<string, PostHandler> = {
  "/v1/chat/completions": (state, body, res, id, arrival) => handleGeneration(state, "chat", body, res, id, arrival),
  "/v1/completions": (state, body, res, id, arrival) => handleGeneration(state, "completion", body, res, id, arrival),
  "/v1/embeddings": handleEmbeddings,
  "/v1/messages": handleMessages,
  "/v1/messages/count_tokens": handleCountTokens,
  "/v1/responses": handleResponses,
  ...POOLING_ROUTES,
  ...TOKENIZE_ROUTES,
};

/** Routes whose errors are rendered the Anthropic way (vllm/entrypoints/anthropic/api_router.py). */
const MESSAGES_PATHS = new Set(["/v1/messages", "/v1/messages/count_tokens"]);

const GET_PATHS = new Set(["/health", "/ping", "/version", "/metrics", "/v1/models"]);

function sendEmpty(res: ServerResponse, status: number): void {
  res.writeHead(status, { "content-length": 0 });
  res.end();
}

/**
 * GET /v1/models, shaped like serving_models.py show_available_models (model_dump of ModelList):
 * the base models, then one card per LoRA adapter (lora.ts).
 */
function modelList(state: EngineState): string {
  const created = Math.floor(Date.now() / 1000);
  const cards = [
    ...[...state.metrics.values()].map(({ model }) => ({ id: model.name, root: model.name, parent: null, maxModelLen: model.maxModelLen })),
    ...loraCards(state).map((lora) => ({ ...lora, maxModelLen: null })),
  ];
  const data = cards.map((card) => ({
    id: card.id,
    object: "model",
    created,
    owned_by: "vllm",
    root: card.root,
    parent: card.parent,
    max_model_len: card.maxModelLen,
    permission: [
      {
        id: `modelperm-${randomHex()}`,
        object: "model_permission",
        created,
        allow_create_engine: false,
        allow_sampling: true,
        allow_logprobs: true,
        allow_search_indices: false,
        allow_view: true,
        allow_fine_tuning: false,
        organization: "*",
        group: null,
        is_blocking: false,
      },
    ],
  }));
  return JSON.stringify({ object: "list", data });
}

/** Answers the GET endpoints. */
function handleGet(state: EngineState, path: string, res: ServerResponse): void {
  if (path === "/health" || path === "/ping") return sendEmpty(res, 200);
  if (path === "/version") return sendJson(res, 200, JSON.stringify({ version: SIM_VLLM_VERSION }));
  if (path === "/v1/models") return sendJson(res, 200, modelList(state));
  const body = renderMetrics([...state.metrics.values()]);
  res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

/** api_server.py validate_json_request, then the JSON body as FastAPI would decode it. */
function decodeBody(req: IncomingMessage, raw: Buffer): unknown {
  const media = (req.headers["content-type"] ?? "").split(";", 1)[0]?.trim().toLowerCase();
  if (media !== "application/json") {
    throw validationError([
      { type: "value_error", loc: ["header", "content-type"], msg: "Unsupported Media Type: Only 'application/json' is allowed" },
    ]);
  }
  if (raw.length === 0) throw validationError([{ type: "missing", loc: ["body"], msg: "Field required" }]);
  try {
    return JSON.parse(raw.toString("utf8"));
  } catch (error) {
    const position = error instanceof Error ? Number(/position (\d+)/.exec(error.message)?.[1] ?? 0) : 0;
    throw validationError([{ type: "json_invalid", loc: ["body", position], msg: "JSON decode error" }]);
  }
}

function fail(res: ServerResponse, error: unknown): void {
  if (error instanceof SimHttpError) return sendError(res, error);
  const message = error instanceof Error ? error.message : String(error);
  sendError(res, new SimHttpError(500, "InternalServerError", message));
}

/** Routes one request (auth already checked). Unknown paths answer like FastAPI. */
export function route(state: EngineState, req: IncomingMessage, res: ServerResponse, path: string, arrival: number): void {
  const method = req.method ?? "GET";
  const post = POST_ROUTES[path] ?? loraRoute(state, path);
  const audio = AUDIO_ROUTES[path];
  if (method === "GET" && GET_PATHS.has(path)) return handleGet(state, path, res);
  if (method === "POST" && path === "/ping") return sendEmpty(res, 200);
  if (method === "POST" && (post || audio)) {
    const chunks: Buffer[] = [];
    // A client that resets the connection mid-upload must not crash the engine.
    req.on("error", () => res.destroy());
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const header = req.headers["x-request-id"];
      const requestId = typeof header === "string" ? header : undefined;
      // The speech-to-text routes take a multipart form, not JSON (FastAPI's Form()).
      if (audio) return void audio(state, req, Buffer.concat(chunks), res, requestId, arrival).catch((error: unknown) => fail(res, error));
      try {
        post?.(state, decodeBody(req, Buffer.concat(chunks)), res, requestId, arrival);
      } catch (error) {
        if (MESSAGES_PATHS.has(path)) sendMessagesError(res, error);
        else fail(res, error);
      }
    });
    return;
  }
  if (routeResponseById(state, req, res, path)) return;
  // Switchyard's own extension, not vLLM's API: K/V export and import for federated attention.
  if (fedattnRoute(state, req, res, path)) return;
  if (post || audio || GET_PATHS.has(path)) return sendJson(res, 405, JSON.stringify({ detail: "Method Not Allowed" }));
  sendJson(res, 404, JSON.stringify({ detail: "Not Found" }));
}
