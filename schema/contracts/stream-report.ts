/**
 * Reported streams: the backplane taps a stream's SSE events itself (usage-tap.ts) and tells the
 * gateway how the stream ended out of band, so the gateway can pass the bytes through natively
 * instead of reading every chunk in JavaScript (docs/architecture.md, "Streams").
 *
 * 1. The gateway asks for it on a streamed inference request with `x-switchyard-stream-report:
 *    strip-usage` (the client did not ask for the usage chunk: the backplane cuts it out) or
 *    `keep-usage`.
 * 2. The backplane answers with `x-switchyard-stream-report: <token>` (32 hex characters, random),
 *    ends the stream itself with an in-band error event and `[DONE]` when the engine fails or ends
 *    without `[DONE]`, and keeps the stream's report under the token.
 * 3. The gateway fetches `GET /stream-reports/<token>` at once; the backplane answers when the
 *    stream has ended (the report below), 404 when it knows no such token. A report is given once
 *    and kept at most REPORT_TTL_SECONDS after its stream ended. The token is the capability: it is
 *    sent only to the gateway, in the answer to a signed request, so the route needs no signature.
 *
 * A backplane that does not know the header ignores it and answers without a token; the gateway then
 * taps the stream itself, as before.
 */

/** Request and response header of the exchange. */
export const STREAM_REPORT_HEADER = "x-switchyard-stream-report";
/** What the gateway asks for: cut the usage-only chunk out, or pass it on. */
export type StreamReportMode = "strip-usage" | "keep-usage";
/** Path prefix of the report route on the backplane. */
export const STREAM_REPORT_PATH = "/stream-reports/";
/** How long a report waits to be fetched after its stream ended. */
export const REPORT_TTL_SECONDS = 60;

const TOKEN = /^[0-9a-f]{32}$/;

/** Whether a token has the format the backplane issues (anything else is refused before a lookup). */
export function isReportToken(token: string): boolean {
  return TOKEN.test(token);
}

/** The mode a request header asks for; null when absent or unknown. */
export function parseReportMode(value: string | string[] | undefined | null): StreamReportMode | null {
  return value === "strip-usage" || value === "keep-usage" ? value : null;
}

/** How a reported stream ended, as the backplane saw it leave for the gateway. */
export interface StreamReport {
  /** ok: ended with `[DONE]`; error: the engine failed or sent an error event (the client got an error event); cancelled: the gateway went away. */
  status: "ok" | "error" | "cancelled";
  /** The engine's usage (the usage chunk), null when the stream ended before it. */
  usage: { prompt_tokens: number; completion_tokens: number; cached_tokens: number } | null;
  /** Content-bearing events sent to the gateway (a lower bound on completion tokens without usage). */
  delivered_chunks: number;
  error_code: string | null;
}

const STATUSES = new Set(["ok", "error", "cancelled"]);

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0;
}

/**
 * Reads a report's JSON; null when it is not one. Hand-written rather than a schema: the gateway
 * reads one per streamed request.
 */
export function parseStreamReport(json: unknown): StreamReport | null {
  if (typeof json !== "object" || json === null) return null;
  const r = json as Record<string, unknown>;
  if (typeof r.status !== "string" || !STATUSES.has(r.status) || !isCount(r.delivered_chunks)) return null;
  if (r.error_code !== null && (typeof r.error_code !== "string" || r.error_code.length > 100)) return null;
  let usage: StreamReport["usage"] = null;
  if (r.usage !== null) {
    if (typeof r.usage !== "object") return null;
    const u = r.usage as Record<string, unknown>;
    if (!isCount(u.prompt_tokens) || !isCount(u.completion_tokens) || !isCount(u.cached_tokens)) return null;
    usage = { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens, cached_tokens: u.cached_tokens };
  }
  return { status: r.status as StreamReport["status"], usage, delivered_chunks: r.delivered_chunks, error_code: r.error_code };
}
