import { z } from "zod";

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

const count = z.number().int().min(0);

/** How a reported stream ended, as the backplane saw it leave for the gateway. */
export const streamReportSchema = z.object({
  /** ok: ended with `[DONE]`; error: the engine failed or sent an error event (the client got an error event); cancelled: the gateway went away. */
  status: z.enum(["ok", "error", "cancelled"]),
  /** The engine's usage (the usage chunk), null when the stream ended before it. */
  usage: z.object({ prompt_tokens: count, completion_tokens: count, cached_tokens: count }).nullable(),
  /** Content-bearing events sent to the gateway (a lower bound on completion tokens without usage). */
  delivered_chunks: count,
  error_code: z.string().max(100).nullable(),
});
/** How a reported stream ended. */
export type StreamReport = z.infer<typeof streamReportSchema>;
