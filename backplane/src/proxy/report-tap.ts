import type { IncomingMessage, ServerResponse } from "node:http";
import type { StreamReport } from "../../../schema/contracts/stream-report.ts";
import { UsageTap } from "../../../schema/contracts/usage-tap.ts";
import { sseEngineFailure } from "../errors.ts";
import type { OpenReport } from "./reports.ts";

const FAILURE = "The inference engine failed in the middle of the stream.";

/** How a reported stream's engine side ended: the engine's answer completed, it broke, or the gateway went away. */
export type ReportedEnd = "complete" | "engine_broke" | "gateway_gone";

function report(tap: UsageTap, status: StreamReport["status"], errorCode: string | null): StreamReport {
  const usage = tap.usage && { prompt_tokens: tap.usage.promptTokens, completion_tokens: tap.usage.completionTokens, cached_tokens: tap.usage.cachedPromptTokens };
  return { status, usage, delivered_chunks: tap.deliveredChunks, error_code: errorCode };
}

/**
 * Sends an engine's SSE answer to the gateway through a usage tap instead of a plain pipe (the
 * headers, with the report's token, are already written; `first` is the engine's first chunk,
 * already read): each chunk goes on as it arrives, minus the usage chunk when `stripUsage`, with
 * backpressure (the engine is paused while the gateway's socket is full). At the end it writes the
 * ending above, files the report (ok, error or cancelled, with the usage and the content events
 * delivered) and calls `onEnd` once. Every way out finishes the report: the engine completing, the
 * engine's connection breaking, the gateway going away (the caller then stops the engine).
 */
export function pipeReported(
  engineRes: IncomingMessage,
  res: ServerResponse,
  first: Buffer,
  opts: { stripUsage: boolean; report: OpenReport },
  onEnd: (end: ReportedEnd) => void,
): void {
  const tap = new UsageTap(opts.stripUsage);
  let ended = false;
  const end = (seen: ReportedEnd) => {
    if (ended) return;
    ended = true;
    // The gateway's socket may be gone before its 'close' event ran: nothing can reach it any more.
    const how = res.destroyed && !res.writableFinished ? "gateway_gone" : seen;
    if (how === "gateway_gone") {
      opts.report.finish(report(tap, "cancelled", "client_cancelled"));
      engineRes.destroy();
    } else {
      // The same ending as the gateway's own tap (worker/src/proxy/sse-tap.ts).
      for (const bytes of tap.ending(how === "engine_broke", sseEngineFailure(FAILURE))) res.write(bytes);
      res.end();
      const failed = how === "engine_broke" || tap.sawError || !tap.sawDone;
      opts.report.finish(report(tap, failed ? "error" : "ok", failed ? "upstream_stream_error" : null));
    }
    onEnd(how);
  };

  let awaitingDrain = false;
  const onDrain = () => {
    awaitingDrain = false;
    engineRes.resume();
  };
  const forward = (chunk: Buffer) => {
    if (ended) return;
    // A plain view, so the tap's `slice` of a block it holds back copies it (Buffer#slice would not).
    const out = tap.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    if (out && !res.write(out) && !awaitingDrain) {
      awaitingDrain = true;
      res.once("drain", onDrain);
    }
    // Paused on every chunk while the gateway's socket is full: a resume by the caller (after the
    // first chunk) lets at most one more chunk through.
    if (awaitingDrain) engineRes.pause();
  };

  engineRes.on("error", () => {});
  res.once("close", () => {
    if (!res.writableFinished) end("gateway_gone");
  });
  if (res.destroyed) return end("gateway_gone");
  forward(first);
  engineRes.on("data", forward);
  engineRes.on("close", () => end(engineRes.complete ? "complete" : "engine_broke"));
}
