/**
 * What the gateway counts of every API request (docs/operations.md#metrics): the route label of a
 * path, and the refusal a known error code stands for when the code that threw it did not say.
 */
import type { ApiError } from "../errors.ts";

/** Route labels of the API's fixed paths (a served request's handler sets its endpoint instead). */
const ROUTES: Record<string, string> = {
  "/v1/chat/completions": "chat",
  "/v1/completions": "completions",
  "/v1/embeddings": "embeddings",
  "/v1/messages": "messages",
  "/v1/messages/count_tokens": "count_tokens",
  "/v1/responses": "responses",
  "/v1/models": "models",
  "/v1/usage": "usage",
  "/v1/audio/transcriptions": "transcriptions",
  "/v1/audio/translations": "translations",
  "/v1/council/vote": "council_vote",
  "/rerank": "rerank",
  "/v1/rerank": "rerank",
  "/v2/rerank": "rerank",
  "/score": "score",
  "/v1/score": "score",
  "/tokenize": "tokenize",
  "/detokenize": "detokenize",
  "/api/embed": "ollama_embed",
  "/api/embeddings": "ollama_embeddings",
};

/** The route label of an API path; null for what is not the client API (admin, node, health routes). */
export function apiRouteOf(path: string): string | null {
  const fixed = ROUTES[path];
  if (fixed) return fixed;
  if (path.startsWith("/v1/fedattn/")) return null;
  if (path.startsWith("/v1/responses/")) return "responses_stored";
  if (path.startsWith("/v1/council/")) return "council";
  if (path.startsWith("/v1/memory")) return "memory";
  if (path.startsWith("/v1/") || path.startsWith("/api/")) return "other";
  return null;
}

/** The refusals known error codes stand for (an error that carries its own `refusal` says more). */
const BY_CODE: Partial<Record<string, { layer: string; reason: string }>> = {
  missing_api_key: { layer: "auth", reason: "missing_key" },
  invalid_api_key: { layer: "auth", reason: "invalid_key" },
  tenant_suspended: { layer: "tenant", reason: "suspended" },
  no_capacity: { layer: "route", reason: "no_capacity" },
  model_not_found: { layer: "route", reason: "model_not_found" },
};

/** The refusal an error stands for, if it is one. */
export function refusalOf(err: ApiError): { layer: string; reason: string } | null {
  return err.refusal ?? BY_CODE[err.code] ?? null;
}
