import { ApiError } from "../errors.ts";

/**
 * Turns an engine's error response into the gateway's error. vLLM >= 0.10.1 sends
 * `{"error":{message,type,param,code}}`, older vLLM a flat `{"object":"error",message,…}`, vLLM's
 * api-key check `{"error":"Unauthorized"}`, and a dead engine a 500 with an empty body.
 */
export function upstreamError(status: number, bodyText: string): ApiError {
  let message: string | null = null;
  let param: string | null = null;
  try {
    const body = JSON.parse(bodyText) as Record<string, unknown>;
    const nested = body.error;
    if (typeof nested === "object" && nested !== null) {
      const e = nested as Record<string, unknown>;
      message = typeof e.message === "string" ? e.message : null;
      param = typeof e.param === "string" ? e.param : null;
    } else if (typeof body.message === "string") {
      message = body.message;
      param = typeof body.param === "string" ? body.param : null;
    }
  } catch {
    // Not JSON: fall through to the generic messages below.
  }
  if (status === 400 || status === 422) {
    return new ApiError("invalid_value", message ?? "The model rejected the request as invalid.", { param, status: 400 });
  }
  if (status === 404) {
    return new ApiError("model_not_found", message ?? "The model does not exist on the GPU node.", { param });
  }
  if (status === 413) return new ApiError("request_too_large", message ?? "The request is too large for the model.");
  // Any other engine failure is the gateway's upstream failing: 502, whatever the engine said.
  return new ApiError("upstream_error", `The GPU node answered ${status}${message ? `: ${message}` : ""}. Retry the request.`);
}

/** Statuses that mean "this node cannot take it, try another" when no byte reached the client yet. */
export function isRetryableStatus(status: number): boolean {
  return status === 500 || status === 502 || status === 503 || status === 504 || status === 429;
}
