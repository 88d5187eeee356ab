/**
 * A minimal tracer shared by the gateway and the backplane: one `Trace` per request records its
 * spans in memory (names, times, attributes, status), and `OtlpExporter` sends the traces kept by
 * sampling as OTLP/HTTP JSON (`POST {endpoint}/v1/traces`, an ExportTraceServiceRequest). The JSON
 * follows the OTLP specification's "JSON Protobuf Encoding": lowerCamelCase keys, trace and span
 * ids as hex strings, enums as integers, 64-bit integers (times, intValue) as decimal strings
 * (opentelemetry-proto docs/specification.md, examples/trace.json). No SDK: both programs record
 * spans for every request while tracing is on and decide at its end whether to send them.
 */
import { formatTraceparent, newSpanId, newTraceId, sampledByRatio, type TraceParent } from "./trace-context.ts";

/** What an attribute may hold (OTLP AnyValue's string, bool, int and double). */
export type AttributeValue = string | number | boolean;

/** OTLP SpanKind values. */
export const SPAN_KIND = { internal: 1, server: 2, client: 3 } as const;
/** One of SPAN_KIND's values. */
export type SpanKind = (typeof SPAN_KIND)[keyof typeof SPAN_KIND];

/** OTLP Status.code values. */
const STATUS_UNSET = 0;
const STATUS_ERROR = 2;

/** One operation of a trace, kept in memory until the trace is exported or dropped. */
export class Span {
  readonly spanId = newSpanId();
  readonly attributes: Record<string, AttributeValue> = {};
  endMs: number | null = null;
  /** Set when the operation failed: the span's status is ERROR with this message. */
  error: string | null = null;

  readonly name: string;
  readonly parentSpanId: string | null;
  readonly kind: SpanKind;
  readonly startMs: number;
  private readonly trace: Trace;

  constructor(trace: Trace, name: string, parentSpanId: string | null, kind: SpanKind, startMs: number) {
    this.trace = trace;
    this.name = name;
    this.parentSpanId = parentSpanId;
    this.kind = kind;
    this.startMs = startMs;
  }

  /** Sets an attribute; null and undefined are skipped, so optional facts need no test at the call. */
  set(key: string, value: AttributeValue | null | undefined): this {
    if (value !== null && value !== undefined) this.attributes[key] = value;
    return this;
  }

  /** Marks the span failed (status ERROR), which makes its trace exported whatever the sampling says. */
  fail(message: string): this {
    this.error ??= message;
    this.trace.failed = true;
    return this;
  }

  /** Ends the span (the first end wins). */
  end(atMs: number = Date.now()): void {
    this.endMs ??= Math.max(atMs, this.startMs);
  }
}

/** How a trace starts: the caller's context (or none), and the head-sampling ratio. */
export interface TraceStart {
  /** The incoming `traceparent`, parsed (null: start a new trace). */
  parent: TraceParent | null;
  /** The incoming `tracestate`, kept as it came (only with a valid parent). */
  tracestate: string | null;
  /** Head-sampling ratio in [0, 1]. */
  ratio: number;
  /** The root span's name, kind and start (ms since the epoch). */
  rootName: string;
  rootKind: SpanKind;
  startMs?: number;
}

/**
 * One request's trace. The head decision (`headSampled`: the caller's sampled flag, else the ratio
 * on the trace id) is made at the start and passed on in `traceparent`; at the end the trace is
 * exported when it was head-sampled or when a span failed (`failed`), so errors are always kept.
 */
export class Trace {
  readonly traceId: string;
  readonly tracestate: string | null;
  readonly headSampled: boolean;
  readonly root: Span;
  /** Some span failed: the trace is exported whatever the sampling decided. */
  failed = false;
  private readonly spans: Span[] = [];
  private pending: Promise<unknown>[] = [];

  constructor(start: TraceStart) {
    this.traceId = start.parent?.traceId ?? newTraceId();
    this.tracestate = start.parent ? start.tracestate : null;
    this.headSampled = start.parent?.sampled === true || sampledByRatio(this.traceId, start.ratio);
    // The root's parent is the caller's span, in another service.
    this.root = this.add(start.rootName, start.parent?.spanId ?? null, start.rootKind, start.startMs ?? Date.now());
  }

  /** Starts a span under `parent` (the root when not given; null for none). */
  start(name: string, opts: { parent?: Span | null; kind?: SpanKind; startMs?: number } = {}): Span {
    const parent = opts.parent === undefined ? this.root : opts.parent;
    return this.add(name, parent?.spanId ?? null, opts.kind ?? SPAN_KIND.internal, opts.startMs ?? Date.now());
  }

  private add(name: string, parentSpanId: string | null, kind: SpanKind, startMs: number): Span {
    const span = new Span(this, name, parentSpanId, kind, startMs);
    this.spans.push(span);
    return span;
  }

  /** Whether the trace will be exported if it ended now (for metrics exemplars and logs). */
  get exported(): boolean {
    return this.headSampled || this.failed;
  }

  /** The `traceparent` to send downstream from `span`, with the head decision as its sampled flag. */
  traceparentFor(span: Span): string {
    return formatTraceparent(this.traceId, span.spanId, this.headSampled);
  }

  /** Keeps the trace open until `work` settles (a stream still being delivered). */
  hold(work: Promise<unknown>): void {
    this.pending.push(work);
  }

  /** Resolves once everything held has settled, including what was held meanwhile. */
  async settled(): Promise<void> {
    while (this.pending.length > 0) await Promise.allSettled(this.pending.splice(0));
  }

  /** The recorded spans (unended ones end now). */
  finish(atMs: number = Date.now()): Span[] {
    for (const span of this.spans) span.end(atMs);
    return this.spans;
  }
}

/** OTLP KeyValue. */
interface KeyValue {
  key: string;
  value: { stringValue: string } | { boolValue: boolean } | { intValue: string } | { doubleValue: number };
}

function keyValues(attributes: Record<string, AttributeValue>): KeyValue[] {
  return Object.entries(attributes).map(([key, v]) => ({
    key,
    value: typeof v === "string" ? { stringValue: v } : typeof v === "boolean" ? { boolValue: v } : Number.isInteger(v) ? { intValue: String(v) } : { doubleValue: v },
  }));
}

/** Unix nanoseconds as the decimal string OTLP JSON gives a fixed64 (milliseconds may have a fraction). */
function unixNanos(ms: number): string {
  return (BigInt(Math.round(ms * 1000)) * 1000n).toString();
}

/** What identifies the sender in every export: its resource attributes (service.name…) and scope. */
export interface OtlpSource {
  resource: Record<string, AttributeValue>;
  scope: { name: string; version?: string };
}

/** The ExportTraceServiceRequest JSON for traces' spans from one source. */
export function otlpTraceRequest(source: OtlpSource, traces: { trace: Trace; spans: Span[] }[]): unknown {
  const spans = traces.flatMap(({ trace, spans: list }) =>
    list.map((span) => ({
      traceId: trace.traceId,
      spanId: span.spanId,
      ...(span.parentSpanId ? { parentSpanId: span.parentSpanId } : {}),
      ...(trace.tracestate ? { traceState: trace.tracestate } : {}),
      name: span.name,
      kind: span.kind,
      startTimeUnixNano: unixNanos(span.startMs),
      endTimeUnixNano: unixNanos(span.endMs ?? span.startMs),
      attributes: keyValues(span.attributes),
      status: span.error === null ? { code: STATUS_UNSET } : { code: STATUS_ERROR, message: span.error },
    })),
  );
  return { resourceSpans: [{ resource: { attributes: keyValues(source.resource) }, scopeSpans: [{ scope: source.scope, spans }] }] };
}

/** Where and how traces are sent. */
export interface OtlpExporterOptions {
  /** The collector's base URL (OTEL_EXPORTER_OTLP_ENDPOINT); traces go to `{endpoint}/v1/traces`. */
  endpoint: string;
  /** Extra request headers (authentication: a secret, never logged). */
  headers: Record<string, string>;
  /** Deadline of one export (ms): past it the export is abandoned and counted as failed. */
  timeoutMs: number;
  source: OtlpSource;
  /** Told about each failed export (never with the headers). */
  onFailure: (error: string, spans: number, failuresSoFar: number) => void;
}

/** Traces finishing within this long of each other share one POST… */
const COALESCE_MS = 10;
/** …of at most this many traces. */
const MAX_TRACES_PER_POST = 64;

/**
 * Sends kept traces to the collector. Traces that finish within COALESCE_MS of each other go in one
 * POST, sent by the call that opened the batch (in a worker, that request's `waitUntil` keeps the
 * send alive). A failed or timed-out export is dropped and counted, never retried: telemetry must
 * not pile up in an isolate or a daemon, and nothing a request waits for depends on it.
 */
export class OtlpExporter {
  /** Exports that failed since this exporter was made. */
  failures = 0;
  private readonly url: string;
  private open: { trace: Trace; spans: Span[] }[] | null = null;
  private readonly sending = new Set<Promise<void>>();

  private readonly opts: OtlpExporterOptions;

  constructor(opts: OtlpExporterOptions) {
    this.opts = opts;
    this.url = `${opts.endpoint.replace(/\/+$/, "")}/v1/traces`;
  }

  /** Queues a finished trace; the promise settles when the batch it joined was sent (never rejects). */
  async export(trace: Trace, spans: Span[]): Promise<void> {
    const opener = this.open === null;
    const batch = (this.open ??= []);
    batch.push({ trace, spans });
    if (batch.length >= MAX_TRACES_PER_POST) return this.send(batch);
    if (!opener) return;
    await new Promise((resolve) => setTimeout(resolve, COALESCE_MS));
    if (this.open === batch) await this.send(batch);
  }

  /** Waits for the exports under way (a daemon's close). */
  async flush(): Promise<void> {
    if (this.open) await this.send(this.open);
    await Promise.allSettled([...this.sending]);
  }

  private send(batch: { trace: Trace; spans: Span[] }[]): Promise<void> {
    if (this.open === batch) this.open = null;
    const spans = batch.reduce((n, t) => n + t.spans.length, 0);
    const sent = this.post(JSON.stringify(otlpTraceRequest(this.opts.source, batch))).catch((err: unknown) => {
      this.failures++;
      this.opts.onFailure(err instanceof Error ? err.message : String(err), spans, this.failures);
    });
    this.sending.add(sent);
    void sent.finally(() => this.sending.delete(sent));
    return sent;
  }

  private async post(body: string): Promise<void> {
    const res = await fetch(this.url, {
      method: "POST",
      headers: { ...this.opts.headers, "content-type": "application/json" },
      body,
      signal: AbortSignal.timeout(this.opts.timeoutMs),
    });
    // Read the (small) answer so the connection is free again; a 4xx/5xx is a failed export.
    const text = await res.text();
    if (!res.ok) throw new Error(`the collector answered ${res.status}${text ? `: ${text.slice(0, 200)}` : ""}`);
  }
}
