import type { StreamReport } from "../../../schema/contracts/stream-report.ts";
import { sseErrorEvent } from "../errors.ts";
import type { StreamOutcome } from "./usage.ts";

const encoder = new TextEncoder();
const BROKEN = encoder.encode(
  "\n\n" + sseErrorEvent("The GPU node stopped responding in the middle of the stream. Retry the request.", "upstream_error"),
);

/** Gets a stream's report from its node once the stream has ended (report-asks.ts `askReport`). */
export type ReportFetcher = () => Promise<StreamReport | null>;

/**
 * Passes a reported stream (one the node taps itself, schema/contracts/stream-report.ts) to the
 * client natively: the runtime pumps the bytes with no JavaScript per chunk, which the usage tap
 * (sse-tap.ts) costs on every chunk. The node cut the usage chunk out if the client did not ask for
 * it and ends the stream itself with an error event and `[DONE]` when its engine fails; only when
 * the node's own connection breaks does the gateway add that ending. How the stream ended (usage,
 * content events delivered, status) comes from the node's report, asked for once the stream has
 * ended; without it (the node died, or did not answer in time) the request is metered from what
 * the gateway knows: the prompt estimate, as for any stream cut before its usage (metering/record.ts),
 * and a `stream_report_missing` log line.
 */
export function pipeReported(
  source: ReadableStream<Uint8Array>,
  fetchReport: ReportFetcher,
  opts: {
    answeredAt: number;
    /** Fires when the client went away (request.signal): the node's stream is cancelled at once. */
    clientGone?: AbortSignal;
    onMissing?: (why: string) => void;
    /** The stream's bytes have ended (before its report is in): the node is done with the request. */
    onEnded?: () => void;
  },
): { body: ReadableStream<Uint8Array>; done: Promise<StreamOutcome> } {
  const { readable, writable } = new IdentityTransformStream();
  // A client that goes away without the runtime saying so is noticed at the next chunk's write.
  const signal = opts.clientGone;
  const ended = source.pipeTo(writable, { preventClose: true, preventAbort: true, ...(signal ? { signal } : {}) }).then(
    async () => {
      await writable.close().catch(() => undefined);
      return "ended" as const;
    },
    async () => {
      // The node's connection broke, or the client went away (then nobody reads: do not write).
      if (signal?.aborted) return "cancelled" as const;
      const writer = writable.getWriter();
      try {
        await writer.write(BROKEN);
        await writer.close();
        return "broken" as const;
      } catch {
        return "cancelled" as const;
      }
    },
  );

  const done = ended.then(async (how): Promise<StreamOutcome> => {
    opts.onEnded?.();
    const report = await fetchReport().catch(() => null);
    if (report === null) {
      opts.onMissing?.(how === "broken" ? "the node's connection broke mid-stream" : "the node gave no report");
      const status = how === "ended" ? "ok" : how === "broken" ? "error" : "cancelled";
      return {
        status,
        usage: null,
        firstByteAt: opts.answeredAt,
        deliveredChunks: 0,
        errorCode: how === "ended" ? null : how === "broken" ? "upstream_stream_error" : "client_cancelled",
      };
    }
    // The client's view wins where the gateway itself ended the stream.
    const status = how === "broken" && report.status === "ok" ? "error" : report.status;
    return {
      status,
      usage: report.usage && { promptTokens: report.usage.prompt_tokens, completionTokens: report.usage.completion_tokens, cachedPromptTokens: report.usage.cached_tokens },
      firstByteAt: opts.answeredAt,
      deliveredChunks: report.delivered_chunks,
      errorCode: status === "ok" ? null : (report.error_code ?? (status === "cancelled" ? "client_cancelled" : "upstream_stream_error")),
    };
  });
  return { body: readable, done };
}
