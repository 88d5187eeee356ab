import { Hono, type Context } from "hono";
import { anthropicErrorResponse, isAnthropicPath } from "./anthropic/errors.ts";
import { HEARTBEAT_PATH, PROBE_PATH, SPOT_PATH } from "../../schema/contracts/heartbeat.ts";
import { HTTPException } from "hono/http-exception";
import { adminApp } from "./admin/index.ts";
import { dashboardRoutes } from "./dashboard/routes.ts";
import { stripeWebhook } from "./billing/webhook.ts";
import { requireApiKey } from "./auth/middleware.ts";
import type { AppEnv, Logger } from "./env.ts";
import { ApiError, errorResponse } from "./errors.ts";
import { depsFrom } from "./platform/deps.ts";
import { heartbeat, nodeProbe, spotNotice } from "./nodes/routes.ts";
import { health } from "./routes/health.ts";
import { listModels } from "./routes/models.ts";
import { proxyHandler } from "./routes/proxy.ts";
import { storedResponseHandler } from "./responses/routes.ts";
import { usageHandler } from "./usage/routes.ts";
import { MEMORY_ROUTE_METHODS, memoryRoutes } from "./memory/routes.ts";
import { isOllamaPath, ollamaErrorResponse } from "./ollama/errors.ts";
import { ollamaEmbed, ollamaEmbeddings } from "./ollama/routes.ts";
import { PROFILE_ROUTES, profileHandler } from "./profiles/routes.ts";
import { fedattnRoutes } from "./fedattn/routes.ts";
import { countEvent, countRequest } from "./platform/metrics.ts";
import { apiRouteOf, refusalOf } from "./platform/request-metrics.ts";
import { listVotesHandler, readVoteHandler, specialistHandler, voteHandler } from "./council/routes.ts";
import { finishRequestTrace, traceRequest } from "./tracing/request.ts";

/** Structured log line on stdout. */
export const log: Logger = (event, fields) => {
  console.log(JSON.stringify({ event, at: new Date().toISOString(), ...fields }));
};

function newRequestId(): string {
  return `req_${crypto.randomUUID().replaceAll("-", "")}`;
}

/** The public routes and their one method (for 405 answers). */
const ROUTE_METHODS: Record<string, string> = {
  "/v1/chat/completions": "POST",
  "/v1/completions": "POST",
  "/v1/embeddings": "POST",
  "/v1/messages": "POST",
  "/v1/messages/count_tokens": "POST",
  "/v1/responses": "POST",
  "/v1/rerank": "POST",
  "/v1/score": "POST",
  "/rerank": "POST",
  "/score": "POST",
  "/tokenize": "POST",
  "/detokenize": "POST",
  "/v1/audio/transcriptions": "POST",
  "/v1/audio/translations": "POST",
  "/v1/council/vote": "POST",
  "/v1/council/votes": "GET",
  "/v1/voice/chat/completions": "POST",
  "/v1/copilot/completions": "POST",
  "/v1/gui/chat/completions": "POST",
  "/v1/agents/stream": "POST",
  "/v1/models": "GET",
  "/v1/usage": "GET",
  "/api/embed": "POST",
  "/api/embeddings": "POST",
  ...MEMORY_ROUTE_METHODS,
};
const OTHER_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/** Builds the gateway's Hono app. */
export function createApp(): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.use(async (c, next) => {
    const deps = depsFrom(c.env, (p) => c.executionCtx.waitUntil(p), log);
    const startedAt = Date.now();
    const trace = traceRequest(c.req.raw, c.req.path, deps.settings.tracing, startedAt);
    c.set("deps", { ...deps, requestId: newRequestId(), startedAt, trace });
    await next();
    const res = c.res;
    // The trace ends with the response (a stream's last byte: the handler holds it open) and is exported after it (tracing/).
    if (trace) deps.waitUntil(finishRequestTrace(c.get("deps"), trace, res.status));
    // Every API answer is counted (platform/metrics.ts); a served one with its model and node.
    const route = c.get("apiRoute") ?? apiRouteOf(c.req.path);
    if (route !== null) {
      countRequest(route, c.get("apiModel") ?? "", res.headers.get("x-switchyard-region") ?? "", res.headers.get("x-switchyard-node") ?? "", res.status);
    }
    // Setting a header on a finished response makes Hono copy the Response: only when it lacks one
    // (the inference and error paths set them themselves).
    if (!res.headers.has("x-request-id")) c.header("x-request-id", c.get("deps").requestId);
    if (!res.headers.has("server-timing")) c.header("server-timing", `gateway;dur=${Date.now() - startedAt}`);
  });

  app.get("/health", health);
  app.post(HEARTBEAT_PATH, heartbeat);
  app.post(PROBE_PATH, nodeProbe);
  app.post(SPOT_PATH, spotNotice);
  // Authenticated by its Stripe-Signature header, not an API key.
  app.post("/webhooks/stripe", stripeWebhook);
  // The wrong method on a known route is a 405 naming the right one, before authentication.
  for (const [path, allow] of Object.entries(ROUTE_METHODS)) {
    app.on(OTHER_METHODS.filter((m) => m !== allow), path, (c) => {
      throw new ApiError("method_not_allowed", `${c.req.method} is not allowed on ${path}; use ${allow}.`, { headers: { allow } });
    });
  }
  // Federated attention (fedattn/, docs/fedattn.md): signed by nodes (or read with the admin token), not API keys.
  app.route("/v1/fedattn", fedattnRoutes);
  app.use("/v1/*", requireApiKey);
  // vLLM's routes outside /v1, as its clients call them.
  for (const path of ["/rerank", "/v2/rerank", "/score", "/tokenize", "/detokenize"]) app.use(path, requireApiKey);
  // Ollama's native API (ollama/), with the same keys as Bearer tokens.
  app.use("/api/*", requireApiKey);
  app.get("/v1/models", listModels);
  app.post("/v1/chat/completions", proxyHandler("chat"));
  app.post("/v1/completions", proxyHandler("completions"));
  app.post("/v1/embeddings", proxyHandler("embeddings"));
  app.post("/v1/messages", proxyHandler("messages"));
  app.post("/v1/messages/count_tokens", proxyHandler("count_tokens"));
  app.post("/v1/responses", proxyHandler("responses"));
  app.on(["GET", "DELETE"], "/v1/responses/:id", storedResponseHandler);
  app.post("/v1/responses/:id/cancel", storedResponseHandler);
  app.get("/v1/responses/:id/input_items", storedResponseHandler);
  for (const path of ["/rerank", "/v1/rerank", "/v2/rerank"]) app.post(path, proxyHandler("rerank"));
  for (const path of ["/score", "/v1/score"]) app.post(path, proxyHandler("score"));
  app.post("/tokenize", proxyHandler("tokenize"));
  app.post("/detokenize", proxyHandler("detokenize"));
  app.post("/v1/audio/transcriptions", proxyHandler("transcriptions"));
  app.post("/v1/audio/translations", proxyHandler("translations"));
  // The specialist council (council/, docs/council.md).
  app.post("/v1/council/vote", voteHandler);
  app.post("/v1/council/specialist/:name", specialistHandler);
  app.get("/v1/council/votes", listVotesHandler);
  app.get("/v1/council/votes/:id", readVoteHandler);
  // Agent streaming profiles (profiles/): the chat route's body, re-chunked and paced per profile.
  for (const [path, profile] of Object.entries(PROFILE_ROUTES)) app.post(path, profileHandler(profile));
  app.get("/v1/usage", usageHandler);
  // Memory trails (memory/, docs/memory.md): the tenant's own data, any key of it.
  app.route("/v1/memory", memoryRoutes);
  app.post("/api/embed", ollamaEmbed);
  app.post("/api/embeddings", ollamaEmbeddings);
  app.route("/admin", adminApp());
  // The web dashboard (dashboard/, docs/dashboard.md): pages over the admin API, cookie sessions.
  app.route("/dashboard", dashboardRoutes);

  // Errors in the caller's dialect: Anthropic's shape on the Messages routes, Ollama's under /api, OpenAI's elsewhere.
  const render = (c: Context<AppEnv>, err: ApiError): Response => {
    // The deps are unset only when building them failed (an invalid setting).
    const requestId = (c.get("deps") as AppEnv["Variables"]["deps"] | undefined)?.requestId ?? "unknown";
    // The gateway's own time on the request (Server-Timing), set here so the response is not copied to add it.
    const started = (c.get("deps") as AppEnv["Variables"]["deps"] | undefined)?.startedAt;
    if (started !== undefined) err.headers["server-timing"] ??= `gateway;dur=${Date.now() - started}`;
    if (isOllamaPath(c.req.path)) return ollamaErrorResponse(err, requestId);
    return isAnthropicPath(c.req.path) ? anthropicErrorResponse(err, requestId) : errorResponse(err, { "x-request-id": requestId });
  };
  app.notFound((c) => render(c, new ApiError("not_found", `No route for ${c.req.method} ${c.req.path}. See GET /v1/models and the README for the API.`)));
  app.onError((err, c) => {
    if (err instanceof ApiError) {
      const refusal = apiRouteOf(c.req.path) === null ? null : refusalOf(err);
      if (refusal) countEvent("switchyard_admission_refusals_total", refusal);
      return render(c, err);
    }
    if (err instanceof HTTPException) {
      const code = err.status === 405 ? "method_not_allowed" : "invalid_value";
      return render(c, new ApiError(code, err.message || "Bad request.", { status: err.status }));
    }
    const requestId = (c.get("deps") as AppEnv["Variables"]["deps"] | undefined)?.requestId ?? "unknown";
    log("unhandled_error", { requestId, error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
    return render(c, new ApiError("internal_error", `The gateway hit an unexpected error. Retry the request; if it persists, report request id ${requestId}.`));
  });
  return app;
}
