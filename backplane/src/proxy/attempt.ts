import { request as httpRequest, type IncomingMessage, type ServerResponse } from "node:http";
import { request as httpsRequest } from "node:https";
import { REQUEST_ID_HEADER } from "../../../schema/contracts/signing.ts";
import { TRACEPARENT_HEADER, TRACESTATE_HEADER } from "../../../schema/contracts/trace-context.ts";
import { STREAM_REPORT_HEADER, type StreamReportMode } from "../../../schema/contracts/stream-report.ts";
import { sseEngineFailure } from "../errors.ts";
import { pipeReported } from "./report-tap.ts";
import { pipeRechunked, type ProfilePipe } from "./rechunk.ts";
import type { ProfileWire } from "../../../schema/contracts/stream-profile.ts";
import type { StreamReports } from "./reports.ts";

/** How one try on one engine ended. */
export type AttemptOutcome =
  /** The answer (2xx) went to the gateway in full. */
  | { kind: "done"; status: number; firstByteMs: number }
  /** The engine refused the request itself (4xx); its answer went to the gateway as is. */
  | { kind: "client_error"; status: number; firstByteMs: number }
  /** Nothing reached the gateway: safe to retry elsewhere. */
  | { kind: "failed_before_first_byte"; reason: string }
  /** The engine failed after the answer started: the stream was ended with an in-band error. */
  | { kind: "failed_after_first_byte"; reason: string; firstByteMs: number }
  /** The gateway went away; the engine request was aborted. */
  | { kind: "client_gone" }
  /** A streaming profile's time limit ended the stream in band; the engine request was aborted. */
  | { kind: "timed_out"; firstByteMs: number; deliveredTokens: number };

/** What one try needs. */
export interface AttemptRequest {
  engineUrl: string;
  engineId: string;
  apiKey: string | null;
  method: string;
  path: string;
  body: Uint8Array;
  /** The body's content type when it is not JSON (an audio upload's multipart boundary). */
  contentType?: string;
  accept: string | undefined;
  requestId: string | undefined;
  stream: boolean;
  /** Streams: time for the first event. Non-streamed: time for the whole answer's headers. */
  firstByteTimeoutMs: number;
  /** The gateway asked for a reported stream (stream-report.ts): the mode, and where reports are kept. */
  report: { mode: StreamReportMode; store: StreamReports } | null;
  /** An agent streaming profile re-chunks a 2xx stream (rechunk.ts), until `deadlineAt` (performance.now() time). */
  profile?: { wire: ProfileWire; clientContinuous: boolean; deadlineAt: number } | null;
  /** The trace context for the engine (W3C headers): vLLM continues the trace under this try's span. */
  trace?: { traceparent: string; tracestate: string | null } | null;
}

/**
 * Sends the request to one engine. Headers go to the gateway only once the engine has answered
 * with a non-5xx status (and, for a stream, sent its first event), so every failure before that
 * point can be retried on another engine without the gateway seeing anything. After that the body
 * is piped byte for byte; an engine that dies mid-stream gets an in-band error and `[DONE]`. A
 * reported stream (the gateway asked, the engine answered 2xx SSE, the store had room) gets its
 * token in the headers and goes through the usage tap instead of the pipe (report-tap.ts).
 * When `gatewayGone` fires (before or after the headers) the engine request is destroyed at once,
 * which vLLM takes as an abort and frees the sequence's slot and KV blocks.
 */
export function attemptEngine(req: AttemptRequest, res: ServerResponse, gatewayGone: AbortSignal): Promise<AttemptOutcome> {
  return new Promise((resolve) => {
    if (gatewayGone.aborted) return resolve({ kind: "client_gone" });
    const started = performance.now();
    let settled = false;
    const finish = (outcome: AttemptOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      gatewayGone.removeEventListener("abort", onGatewayClose);
      resolve(outcome);
    };
    const url = new URL(req.path, req.engineUrl);
    const headers: Record<string, string | number> = { "content-type": req.contentType ?? "application/json", "content-length": req.body.length };
    if (req.accept) headers.accept = req.accept;
    if (req.requestId) headers[REQUEST_ID_HEADER] = req.requestId;
    if (req.apiKey) headers.authorization = `Bearer ${req.apiKey}`;
    if (req.trace) {
      headers[TRACEPARENT_HEADER] = req.trace.traceparent;
      if (req.trace.tracestate) headers[TRACESTATE_HEADER] = req.trace.tracestate;
    }
    const send = url.protocol === "https:" ? httpsRequest : httpRequest;
    const upstream = send(url, { method: req.method, headers });

    const deadline = setTimeout(() => {
      upstream.destroy();
      finish({ kind: "failed_before_first_byte", reason: `no first byte within ${req.firstByteTimeoutMs} ms` });
    }, req.firstByteTimeoutMs);
    let rechunked: ProfilePipe | null = null;
    const onGatewayClose = () => {
      if (res.writableFinished) return;
      upstream.destroy();
      finish({ kind: "client_gone" });
    };
    gatewayGone.addEventListener("abort", onGatewayClose, { once: true });

    upstream.on("error", (err) => finish({ kind: "failed_before_first_byte", reason: err.message }));
    upstream.on("response", (engineRes: IncomingMessage) => {
      const status = engineRes.statusCode ?? 502;
      if (status >= 500) {
        // vLLM answers 500 with an empty body when its engine died: a node problem, not the caller's.
        engineRes.resume();
        engineRes.on("end", () => finish({ kind: "failed_before_first_byte", reason: `engine answered ${status}` }));
        engineRes.on("error", () => finish({ kind: "failed_before_first_byte", reason: `engine answered ${status}` }));
        return;
      }
      const contentType = engineRes.headers["content-type"] ?? "application/json";
      const isSse = contentType.startsWith("text/event-stream");
      const start = (first: Buffer | null) => {
        clearTimeout(deadline);
        const firstByteMs = performance.now() - started;
        const headers: Record<string, string> = { "content-type": contentType, "cache-control": "no-cache", "x-switchyard-engine": req.engineId };
        const profile = first && status < 300 && isSse ? (req.profile ?? null) : null;
        const report = first && req.report && status < 300 && !profile ? req.report.store.open() : null;
        if (report) headers[STREAM_REPORT_HEADER] = report.token;
        if (profile) headers["x-switchyard-profile"] = profile.wire.name;
        res.writeHead(status, headers);
        if (first && profile) {
          rechunked = pipeRechunked(engineRes, res, first, { profile: profile.wire, clientContinuous: profile.clientContinuous, deadlineAt: profile.deadlineAt }, (end, deliveredTokens) => {
            if (end === "complete") finish({ kind: "done", status, firstByteMs });
            else if (end === "timed_out") finish({ kind: "timed_out", firstByteMs, deliveredTokens });
            else if (end === "engine_broke") finish({ kind: "failed_after_first_byte", reason: "engine connection broke mid-response", firstByteMs });
            else finish({ kind: "client_gone" });
          });
          return;
        }
        if (first && report && req.report) {
          return pipeReported(engineRes, res, first, { stripUsage: req.report.mode === "strip-usage", report }, (end) => {
            if (end === "complete") finish({ kind: "done", status, firstByteMs });
            else if (end === "engine_broke") finish({ kind: "failed_after_first_byte", reason: "engine connection broke mid-response", firstByteMs });
            else finish({ kind: "client_gone" });
          });
        }
        if (first) res.write(first);
        engineRes.pipe(res, { end: false });
        engineRes.on("error", () => {});
        engineRes.on("close", () => {
          if (engineRes.complete) {
            res.end();
            finish(status >= 400 ? { kind: "client_error", status, firstByteMs } : { kind: "done", status, firstByteMs });
            return;
          }
          if (isSse && !res.destroyed) res.end(sseEngineFailure("The inference engine failed in the middle of the stream.", req.path));
          else res.destroy();
          finish({ kind: "failed_after_first_byte", reason: "engine connection broke mid-response", firstByteMs });
        });
      };
      if (!req.stream || !isSse) return start(null);
      // A stream counts as started with its first event, not with its headers (vLLM sends headers at once).
      engineRes.once("data", (chunk: Buffer) => {
        engineRes.pause();
        start(chunk);
        // A re-chunked stream whose buffer the first chunk already filled stays paused.
        if (!rechunked?.holdsEngine()) engineRes.resume();
      });
      engineRes.once("close", () => {
        if (!res.headersSent) finish({ kind: "failed_before_first_byte", reason: "engine closed the stream before its first event" });
      });
    });
    upstream.end(req.body);
  });
}
