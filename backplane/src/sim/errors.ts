import type { ServerResponse } from "node:http";

/**
 * vLLM's error types as they appear in `error.type`:
 * - "BadRequestError" / "NotFoundError" / "InternalServerError": raised by the serving code.
 * - "Bad Request": FastAPI request-validation failures, which vLLM turns from 422 into 400
 *   with the HTTP reason phrase as the type (api_server.py `validation_exception_handler`).
 * - "Bad Request" / "Unprocessable Entity": a FastAPI HTTPException, which vLLM's
 *   `http_exception_handler` renders with the status's reason phrase as the type.
 */
export type SimErrorType = "BadRequestError" | "NotFoundError" | "InternalServerError" | "Bad Request" | "Unprocessable Entity" | "InvalidUserInput";

/** The simulator's one error type, rendered by `sendError` in vLLM's 0.10.1+ shape. */
export class SimHttpError extends Error {
  override name = "SimHttpError";
  readonly status: number;
  readonly type: SimErrorType;

  constructor(status: number, type: SimErrorType, message: string) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

/** A 400 BadRequestError, as `create_error_response` makes by default. */
export function badRequest(message: string): SimHttpError {
  return new SimHttpError(400, "BadRequestError", message);
}

/** A FastAPI `HTTPException(status, detail)` as vLLM's handler renders it (type = reason phrase). */
export function httpException(status: 400 | 422, detail: string): SimHttpError {
  return new SimHttpError(status, status === 400 ? "Bad Request" : "Unprocessable Entity", detail);
}

/** vLLM's 404 for a model name it does not serve. */
export function modelNotFound(model: string): SimHttpError {
  return new SimHttpError(404, "NotFoundError", `The model \`${model}\` does not exist.`);
}

/** One request-validation problem, in pydantic's terms. */
export interface ValidationIssue {
  type: string;
  loc: readonly (string | number)[];
  msg: string;
}

/** Python repr of a str: single quotes unless the text holds one and no double quote. */
function pyStr(text: string): string {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  const escaped = text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(quote === "'" ? /'/g : /"/g, `\\${quote}`);
  return `${quote}${escaped}${quote}`;
}

/** A 400 "Bad Request" whose message is the repr of pydantic's error list, as vLLM's handler prints it. */
export function validationError(issues: readonly ValidationIssue[]): SimHttpError {
  const items = issues.map((issue) => {
    const loc = issue.loc.map((part) => (typeof part === "number" ? String(part) : pyStr(part)));
    const tuple = loc.length === 1 ? `(${loc[0]},)` : `(${loc.join(", ")})`;
    return `{'type': ${pyStr(issue.type)}, 'loc': ${tuple}, 'msg': ${pyStr(issue.msg)}}`;
  });
  return new SimHttpError(400, "Bad Request", `[${items.join(", ")}]`);
}

/** Writes `{"error":{"message","type","param","code"}}` with status = code (vLLM >= 0.10.1). */
export function sendError(res: ServerResponse, error: SimHttpError): void {
  if (res.headersSent) return;
  const body = JSON.stringify({ error: { message: error.message, type: error.type, param: null, code: error.status } });
  res.writeHead(error.status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

/** Writes a small JSON body (FastAPI's compact JSONResponse). */
export function sendJson(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

/** Message vLLM's EngineDeadError carries. */
export const ENGINE_DEAD_MESSAGE = "EngineCore encountered an issue. See stack trace (above) for the root cause.";

/**
 * The in-band SSE error event vLLM sends once a stream has started, followed by [DONE].
 * vLLM builds it with Python's json.dumps, hence the ", " and ": " separators.
 */
export function sseErrorEvent(message: string, type: SimErrorType = "InternalServerError", code = 500): string {
  const json = `{"error": {"message": ${JSON.stringify(message)}, "type": ${JSON.stringify(type)}, "param": null, "code": ${code}}}`;
  return `data: ${json}\n\ndata: [DONE]\n\n`;
}
