import type { ContentfulStatusCode } from "hono/utils/http-status";

/** Every error the gateway returns, with its HTTP status and OpenAI error `type`. */
const ERRORS = {
  invalid_api_key: { status: 401, type: "invalid_request_error" },
  missing_api_key: { status: 401, type: "invalid_request_error" },
  permission_denied: { status: 403, type: "permission_error" },
  tenant_suspended: { status: 403, type: "permission_error" },
  model_not_found: { status: 404, type: "invalid_request_error" },
  not_found: { status: 404, type: "invalid_request_error" },
  method_not_allowed: { status: 405, type: "invalid_request_error" },
  conflict: { status: 409, type: "invalid_request_error" },
  response_gone: { status: 410, type: "invalid_request_error" },
  invalid_json: { status: 400, type: "invalid_request_error" },
  invalid_value: { status: 400, type: "invalid_request_error" },
  invalid_signature: { status: 400, type: "invalid_request_error" },
  missing_field: { status: 400, type: "invalid_request_error" },
  context_length_exceeded: { status: 400, type: "invalid_request_error" },
  // Federated attention (fedattn/): the aggregation's refusals (schema/contracts/fedattn-aggregate.ts).
  no_contributions: { status: 400, type: "invalid_request_error" },
  bad_weight: { status: 400, type: "invalid_request_error" },
  shape_mismatch: { status: 400, type: "invalid_request_error" },
  unmatched_block_range: { status: 400, type: "invalid_request_error" },
  duplicate_contribution: { status: 409, type: "invalid_request_error" },
  session_full: { status: 409, type: "invalid_request_error" },
  unsupported_media_type: { status: 415, type: "invalid_request_error" },
  request_too_large: { status: 413, type: "invalid_request_error" },
  // OpenAI's type says what ran out: "requests" by default, "tokens" for tokens per minute (opts.type).
  rate_limit_exceeded: { status: 429, type: "requests" },
  insufficient_quota: { status: 429, type: "insufficient_quota" },
  // Waited at the edge queue for as long as allowed (queue/turn.ts, docs/edge-queue.md).
  queue_timeout: { status: 429, type: "requests" },
  upstream_error: { status: 502, type: "api_error" },
  no_capacity: { status: 503, type: "api_error" },
  upstream_timeout: { status: 504, type: "api_error" },
  dependency_unavailable: { status: 503, type: "api_error" },
  // A feature whose secret or setting the operator has not set (the message names it).
  not_configured: { status: 503, type: "api_error" },
  internal_error: { status: 500, type: "api_error" },
} as const satisfies Record<string, { status: ContentfulStatusCode; type: string }>;

/** A gateway error code (the `code` field of the OpenAI error body). */
export type ErrorCode = keyof typeof ERRORS;

/** The OpenAI error body. */
export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** The one error type of the worker; rendered by `app.onError` as an OpenAI-shaped body. */
export class ApiError extends Error {
  readonly code: ErrorCode;
  readonly param: string | null;
  readonly headers: Record<string, string>;
  /** Set when the status comes from an upstream engine rather than from the code's default. */
  readonly statusOverride: ContentfulStatusCode | undefined;
  /** The body's `type`: the code's default unless set (a tokens-per-minute 429 is type "tokens"). */
  readonly type: string;
  /** For a request refused before a node: the layer and reason counted in `switchyard_admission_refusals_total`. */
  readonly refusal: { layer: string; reason: string } | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    opts: { param?: string | null; headers?: Record<string, string>; status?: ContentfulStatusCode; type?: string; refusal?: { layer: string; reason: string } } = {},
  ) {
    super(message);
    this.name = "ApiError";
    this.code = code;
    this.param = opts.param ?? null;
    this.headers = opts.headers ?? {};
    this.statusOverride = opts.status;
    this.type = opts.type ?? ERRORS[code].type;
    this.refusal = opts.refusal;
  }

  get status(): ContentfulStatusCode {
    return this.statusOverride ?? ERRORS[this.code].status;
  }

  toBody(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** Builds the JSON response for an error. */
export function errorResponse(err: ApiError, extraHeaders: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(err.toBody()), {
    status: err.status,
    headers: { "content-type": "application/json", ...err.headers, ...extraHeaders },
  });
}

/** The in-band SSE error event sent when a stream fails after its headers went out, followed by `[DONE]`. */
export function sseErrorEvent(message: string, code: ErrorCode = "upstream_error"): string {
  const body: OpenAIErrorBody = { error: { message, type: ERRORS[code].type, param: null, code } };
  return `data: ${JSON.stringify(body)}\n\ndata: [DONE]\n\n`;
}
