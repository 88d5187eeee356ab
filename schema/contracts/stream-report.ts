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
 * 3. When the stream has ended on the gateway's side, the gateway asks for its report, with the
 *    reports of other streams of the same node that ended within a few milliseconds (one request
 *    for many under load): `POST /stream-reports` `{"tokens": [...]}` (at most MAX_REPORTS_PER_ASK).
 *    The backplane answers once every one of those streams has ended, or REPORT_WAIT_MS after the
 *    ask, with `{"reports": {"<token>": <report> | null}}`: null for a token it does not know (or
 *    whose stream is still running by then). A report is given once and kept at most
 *    REPORT_TTL_SECONDS after its stream ended. The token is the capability: it is sent only to the
 *    gateway, in the answer to a signed request, so the route needs no signature.
 *
 * A backplane that does not know the header ignores it and answers without a token; the gateway then
 * taps the stream itself, as before.
 */

/** Request and response header of the exchange. */
export const STREAM_REPORT_HEADER = "x-switchyard-stream-report";
/** What the gateway asks for: cut the usage-only chunk out, or pass it on. */
export type StreamReportMode = "strip-usage" | "keep-usage";
/** The report route on the backplane (POST). */
export const STREAM_REPORT_PATH = "/stream-reports";
/** How long a report waits to be asked for after its stream ended. */
export const REPORT_TTL_SECONDS = 60;
/** The most tokens one ask may name. */
export const MAX_REPORTS_PER_ASK = 256;
/** How long the backplane waits for the streams of an ask to end. */
export const REPORT_WAIT_MS = 5_000;

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

/** Reads an ask's body: the tokens (well-formed, at most MAX_REPORTS_PER_ASK); null when it is not one. */
export function parseReportAsk(json: unknown): string[] | null {
  if (typeof json !== "object" || json === null) return null;
  const tokens = (json as Record<string, unknown>).tokens;
  if (!Array.isArray(tokens) || tokens.length === 0 || tokens.length > MAX_REPORTS_PER_ASK) return null;
  return tokens.every((t): t is string => typeof t === "string" && isReportToken(t)) ? tokens : null;
}

/** Reads an answer's body: a report or null per token asked for; null when it is not an answer. */
export function parseReportAnswer(json: unknown, tokens: readonly string[]): Map<string, StreamReport | null> | null {
  if (typeof json !== "object" || json === null) return null;
  const reports = (json as Record<string, unknown>).reports;
  if (typeof reports !== "object" || reports === null) return null;
  const out = new Map<string, StreamReport | null>();
  for (const token of tokens) {
    const raw = (reports as Record<string, unknown>)[token];
    out.set(token, raw === undefined || raw === null ? null : parseStreamReport(raw));
  }
  return out;
}
