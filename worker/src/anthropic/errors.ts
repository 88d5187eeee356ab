import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { ApiError, ErrorCode } from "../errors.ts";

/**
 * Anthropic's error body (`{"type":"error","error":{"type","message"},"request_id"}`), what the
 * Anthropic SDKs read on the Messages routes. The gateway's error codes map onto Anthropic's types
 * and statuses; the code itself is kept in `error.details.error_code` (the SDK's `errorCode`).
 */
export interface AnthropicErrorBody {
  type: "error";
  error: { type: string; message: string; details: { error_code: string } };
  request_id: string;
}

/** Paths answered in Anthropic's shape. */
export function isAnthropicPath(path: string): boolean {
  return path === "/v1/messages" || path.startsWith("/v1/messages/");
}

/**
 * Anthropic's status and type for a gateway error. Departures from the OpenAI routes, each chosen for
 * what the Anthropic SDK does with it: a spent budget is 402 `billing_error` (not retried, since
 * retrying cannot help until the budget is raised), and no capacity is 529 `overloaded_error`
 * (retried with backoff, as Anthropic sheds load).
 */
function anthropicStatus(code: ErrorCode, status: ContentfulStatusCode): { status: number; type: string } {
  if (code === "insufficient_quota") return { status: 402, type: "billing_error" };
  if (code === "no_capacity") return { status: 529, type: "overloaded_error" };
  switch (status) {
    case 401:
      return { status, type: "authentication_error" };
    case 402:
      return { status, type: "billing_error" };
    case 403:
      return { status, type: "permission_error" };
    case 404:
      return { status, type: "not_found_error" };
    case 409:
      return { status, type: "conflict_error" };
    case 413:
      return { status, type: "request_too_large" };
    case 429:
      return { status, type: "rate_limit_error" };
    case 504:
      return { status, type: "timeout_error" };
    default:
      return { status, type: status >= 500 ? "api_error" : "invalid_request_error" };
  }
}

/** The Anthropic-shaped body of an error. */
export function anthropicErrorBody(err: ApiError, requestId: string): AnthropicErrorBody {
  return {
    type: "error",
    error: { type: anthropicStatus(err.code, err.status).type, message: err.message, details: { error_code: err.code } },
    request_id: requestId,
  };
}

/** The Anthropic-shaped response for an error, with `request-id` (read by the Anthropic SDK) and `x-request-id`. */
export function anthropicErrorResponse(err: ApiError, requestId: string): Response {
  return new Response(JSON.stringify(anthropicErrorBody(err, requestId)), {
    status: anthropicStatus(err.code, err.status).status,
    headers: { "content-type": "application/json", ...err.headers, "request-id": requestId, "x-request-id": requestId },
  });
}

/** The in-band error event that ends an Anthropic stream after its headers went out (no `[DONE]` in this dialect). */
export function anthropicSseError(message: string, code: ErrorCode, requestId: string): string {
  const type = code === "no_capacity" ? "overloaded_error" : code === "upstream_timeout" ? "timeout_error" : "api_error";
  const body = { type: "error", error: { type, message, details: { error_code: code } }, request_id: requestId };
  return `event: error\ndata: ${JSON.stringify(body)}\n\n`;
}
