import type { ServerResponse } from "node:http";

/** Error codes the backplane answers with, and their HTTP statuses. */
const STATUS = {
  bad_request: 400,
  unauthorized: 401,
  not_found: 404,
  model_not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  request_too_large: 413,
  engine_error: 502,
  engine_unavailable: 503,
  overloaded: 503,
  draining: 503,
  engine_timeout: 504,
} as const;

/** A backplane error code. */
export type BackplaneErrorCode = keyof typeof STATUS;

/** Writes an OpenAI-shaped error body; no-op if the headers already went out. */
export function sendError(res: ServerResponse, code: BackplaneErrorCode, message: string, headers: Record<string, string> = {}): void {
  if (res.headersSent) return;
  const status = STATUS[code];
  const body = JSON.stringify({ error: { message, type: status >= 500 ? "api_error" : "invalid_request_error", param: null, code } });
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body), ...headers });
  res.end(body);
}

/**
 * The in-band SSE error the backplane appends when the engine dies mid-stream, in the stream's own
 * dialect: OpenAI's `data: {"error":…}` then `[DONE]`; on Anthropic's Messages route (`path`
 * `/v1/messages`) `event: error` with Anthropic's error body and no `[DONE]` (Anthropic clients only
 * read events that have an `event:` line, and end on `message_stop` or an error); on the Responses
 * route `event: error` with the Responses error fields.
 */
export function sseEngineFailure(message: string, path = ""): string {
  const route = path.split("?")[0];
  if (route === "/v1/messages") {
    return `event: error\ndata: ${JSON.stringify({ type: "error", error: { type: "api_error", message } })}\n\n`;
  }
  // The Responses API's error event: its fields at the top level, no `[DONE]` (api-surfaces §1.4).
  if (route === "/v1/responses") return `event: error\ndata: ${JSON.stringify({ type: "error", code: "engine_stream_failed", message, param: null })}\n\n`;
  const body = { error: { message, type: "api_error", param: null, code: "engine_stream_failed" } };
  return `data: ${JSON.stringify(body)}\n\ndata: [DONE]\n\n`;
}
