/**
 * The gateway's request traces (docs/tracing.md): started where the request's deps are built
 * (app.ts) when OTEL_EXPORTER_OTLP_ENDPOINT is set, given spans along the inference path (routing,
 * admission, each upstream attempt in proxy/forward.ts, the stream), and finished after the
 * response, in `waitUntil`: kept when head-sampled or when something failed, then exported. With
 * tracing off no Trace exists and every call site is a `?.` on null.
 */
import { OtlpExporter, SPAN_KIND, type Span, Trace } from "../../../schema/contracts/otlp-trace.ts";
import { parseTraceparent, TRACEPARENT_HEADER, TRACESTATE_HEADER } from "../../../schema/contracts/trace-context.ts";
import type { Logger } from "../env.ts";
import { ApiError } from "../errors.ts";
import type { RequestDeps } from "../platform/deps.ts";
import type { StreamOutcome } from "../proxy/usage.ts";
import type { NodeEntry } from "../routing/snapshot.ts";
import type { TracingSettings } from "../settings.ts";

/** The root span's name. */
export const ROOT_SPAN = "gateway request";

/**
 * A new trace for a request, or null when tracing is off or the path is not traced (`/health` and
 * the nodes' `/internal/` calls: probes and heartbeats every few seconds would be most of the
 * traces). It continues the caller's `traceparent` when that is valid (its `tracestate` kept as it
 * came), else starts a new trace (an invalid header is ignored, as level 1 asks).
 */
export function traceRequest(request: Request, path: string, settings: TracingSettings | null, startedAt: number): Trace | null {
  if (!settings || path === "/health" || path.startsWith("/internal/")) return null;
  const parent = parseTraceparent(request.headers.get(TRACEPARENT_HEADER));
  const trace = new Trace({
    parent,
    tracestate: parent ? request.headers.get(TRACESTATE_HEADER) : null,
    ratio: settings.ratio,
    rootName: ROOT_SPAN,
    rootKind: SPAN_KIND.server,
    startMs: startedAt,
  });
  trace.root.set("http.request.method", request.method).set("url.path", path);
  return trace;
}

/**
 * Ends the request's trace once the response is complete (a stream's last byte included: the
 * handler holds the trace open on it) and exports it when it is kept. Runs in `waitUntil`; never
 * rejects and never touches the response.
 */
export async function finishRequestTrace(deps: Pick<RequestDeps, "settings" | "log" | "requestId">, trace: Trace, status: number): Promise<void> {
  const settings = deps.settings.tracing;
  if (!settings) return;
  await trace.settled();
  const root = trace.root.set("http.response.status_code", status).set("switchyard.request_id", deps.requestId);
  if (status >= 500) root.fail(`HTTP ${status}`);
  root.end();
  if (!trace.exported) return;
  await exporterFor(settings, deps.log).export(trace, trace.finish());
}

let exporter: { settings: TracingSettings; exporter: OtlpExporter } | null = null;

/** The isolate's exporter for these settings (settings are parsed once per isolate). */
function exporterFor(settings: TracingSettings, log: Logger): OtlpExporter {
  if (exporter?.settings !== settings) {
    exporter = {
      settings,
      exporter: new OtlpExporter({
        endpoint: settings.endpoint,
        headers: settings.headers,
        timeoutMs: settings.timeoutMs,
        source: { resource: { "service.name": settings.serviceName }, scope: { name: "switchyard-gateway" } },
        onFailure: (error, spans, failures) => log("trace_export_failed", { endpoint: settings.endpoint, error, spans, failures }),
      }),
    };
  }
  return exporter.exporter;
}

/**
 * Ends `span` when `work` settles: `describe` adds what the result says; a failure is recorded as
 * the error it is (a 5xx ApiError or an unexpected error fails the span and so keeps the trace; a
 * refusal such as 429 is an expected outcome and only named). Without a span, `work` as it is.
 */
export function traced<T>(span: Span | undefined, work: Promise<T>, describe?: (value: T, span: Span) => void): Promise<T> {
  if (!span) return work;
  return work.then(
    (value) => {
      describe?.(value, span);
      span.end();
      return value;
    },
    (err: unknown) => {
      recordError(span, err);
      span.end();
      throw err;
    },
  );
}

/** Names `err` on `span` (error.type), failing it unless it is a client-side ApiError (4xx). */
export function recordError(span: Span, err: unknown): void {
  if (err instanceof ApiError) {
    span.set("error.type", err.code);
    if (err.status >= 500) span.fail(err.message);
    return;
  }
  span.set("error.type", "internal_error").fail(err instanceof Error ? err.message : String(err));
}

/** What the inference path knows about the request once its model is resolved (root attributes; positional, so tracing off allocates nothing). */
export function describeRequest(trace: Trace | null | undefined, route: string, model: string, tenantId: string, stream: boolean): void {
  trace?.root.set("http.route", route).set("gen_ai.request.model", model).set("switchyard.tenant_id", tenantId).set("switchyard.stream", stream);
}

/** The routing span's result: how many nodes were planned, and the first choice. */
export function describeRoute(nodes: NodeEntry[], span: Span): void {
  span.set("switchyard.routing.candidates", nodes.length).set("switchyard.node.id", nodes[0]?.id);
}

/**
 * Keeps the trace open until the node's answer settles; a failure there (also one that reaches the
 * client in band, after a keep-alive stream already sent its 200) is recorded on the root span.
 */
export function holdAnswer(trace: Trace | null | undefined, answer: Promise<unknown>): void {
  trace?.hold(answer.catch((err: unknown) => recordError(trace.root, err)));
}

/** The usage of a served answer, on the root span. */
export function recordUsage(trace: Trace | null | undefined, outcome: StreamOutcome): void {
  if (!trace || !outcome.usage) return;
  trace.root.set("gen_ai.usage.input_tokens", outcome.usage.promptTokens).set("gen_ai.usage.output_tokens", outcome.usage.completionTokens);
}

/**
 * The `stream` span: from the node's first byte to the stream's end (now), with its tokens and how
 * it ended; a stream that broke off (`error`) fails it, a client cancel does not.
 */
export function recordStream(trace: Trace | null | undefined, outcome: StreamOutcome, answeredAt: number): void {
  if (!trace) return;
  const span = trace
    .start("stream", { startMs: outcome.firstByteAt ?? answeredAt })
    .set("switchyard.stream.status", outcome.status)
    .set("switchyard.stream.delivered_chunks", outcome.deliveredChunks)
    .set("gen_ai.usage.input_tokens", outcome.usage?.promptTokens)
    .set("gen_ai.usage.output_tokens", outcome.usage?.completionTokens);
  if (outcome.status === "error") span.set("error.type", outcome.errorCode ?? "upstream_error").fail(`the stream ended in error (${outcome.errorCode ?? "upstream_error"})`);
  span.end();
  recordUsage(trace, outcome);
}
