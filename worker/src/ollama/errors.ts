import type { ApiError } from "../errors.ts";

/** Paths answered in Ollama's shape (Ollama's native API lives under /api). */
export function isOllamaPath(path: string): boolean {
  return path === "/api" || path.startsWith("/api/");
}

/**
 * Ollama's error answer, `{"error":"message"}` (ollama docs/api/errors.mdx), with the gateway's
 * status (Ollama's clients throw on any status >= 400 with the message) and headers (Retry-After,
 * rate-limit headers), plus `x-request-id`.
 */
export function ollamaErrorResponse(err: ApiError, requestId: string): Response {
  return new Response(JSON.stringify({ error: err.message }), {
    status: err.status,
    headers: { "content-type": "application/json; charset=utf-8", ...err.headers, "x-request-id": requestId },
  });
}
