/**
 * The backplane's traces (docs/tracing.md): a `backplane request` span per signed inference request,
 * continuing the gateway's `traceparent` (its upstream-attempt span is the parent), an `engine call`
 * span per try on an engine, whose id goes to the engine in `traceparent` (vLLM continues it when
 * started with --otlp-traces-endpoint), kept when the gateway sampled the trace, by the ratio, or
 * when the request failed here, and exported as OTLP/HTTP JSON like the gateway's.
 */
import type { IncomingMessage } from "node:http";
import { OtlpExporter, SPAN_KIND, type Span, Trace } from "../../../schema/contracts/otlp-trace.ts";
import { parseTraceparent, TRACEPARENT_HEADER, TRACESTATE_HEADER } from "../../../schema/contracts/trace-context.ts";
import type { TracingConfig } from "../config.ts";
import type { Log } from "../log.ts";
import type { AttemptOutcome } from "../proxy/attempt.ts";

/** The root span's name on the backplane. */
export const BACKPLANE_SPAN = "backplane request";
/** The span of one try on an engine. */
export const ENGINE_SPAN = "engine call";

function header(value: string | string[] | undefined): string | null {
  // Node joins repeated headers with ", " only for some names; an array (or a joined value) is invalid.
  return typeof value === "string" ? value : null;
}

/** Records and exports this node's traces; `close()` waits for exports under way (safe twice). */
export class BackplaneTracer {
  private readonly config: TracingConfig;
  private readonly exporter: OtlpExporter;

  constructor(config: TracingConfig, node: { nodeId: string; region: string }, log: Log) {
    this.config = config;
    this.exporter = new OtlpExporter({
      endpoint: config.endpoint,
      headers: config.headers,
      timeoutMs: config.timeoutMs,
      source: { resource: { "service.name": config.serviceName, "switchyard.node.id": node.nodeId, "cloud.region": node.region }, scope: { name: "switchyard-backplane" } },
      onFailure: (error, spans, failures) => log("trace_export_failed", { endpoint: config.endpoint, error, spans, failures }, "warn"),
    });
  }

  /** A trace for a request that passed the signature check: the gateway's context when valid, else a new trace. */
  begin(req: IncomingMessage, path: string): Trace {
    const parent = parseTraceparent(header(req.headers[TRACEPARENT_HEADER]));
    const trace = new Trace({ parent, tracestate: parent ? header(req.headers[TRACESTATE_HEADER]) : null, ratio: this.config.ratio, rootName: BACKPLANE_SPAN, rootKind: SPAN_KIND.server });
    trace.root.set("http.request.method", req.method ?? "POST").set("url.path", path).set("switchyard.request_id", header(req.headers["x-request-id"]));
    return trace;
  }

  /** Ends the request's trace with the status the gateway got, and exports it when it is kept (in the background). */
  finish(trace: Trace, status: number): void {
    const root = trace.root.set("http.response.status_code", status);
    if (status >= 500) root.fail(`HTTP ${status}`);
    root.end();
    if (trace.exported) void this.exporter.export(trace, trace.finish());
  }

  /** Sends what is queued and waits for the exports under way. */
  close(): Promise<void> {
    return this.exporter.flush();
  }
}

/** Ends an engine call's span with how the try ended; a failure of the engine fails it (the trace is then kept). */
export function endEngineSpan(span: Span | undefined, outcome: AttemptOutcome): void {
  if (!span) return;
  switch (outcome.kind) {
    case "done":
    case "client_error":
      span.set("http.response.status_code", outcome.status).set("switchyard.first_byte_ms", Math.round(outcome.firstByteMs));
      break;
    case "failed_before_first_byte":
      span.set("error.type", "before_first_byte").fail(outcome.reason);
      break;
    case "failed_after_first_byte":
      span.set("error.type", "after_first_byte").set("switchyard.first_byte_ms", Math.round(outcome.firstByteMs)).fail(outcome.reason);
      break;
    case "client_gone":
      span.set("error.type", "client_gone");
      break;
    case "timed_out":
      span.set("error.type", "profile_timeout").set("switchyard.stream.delivered_tokens", outcome.deliveredTokens);
  }
  span.end();
}
