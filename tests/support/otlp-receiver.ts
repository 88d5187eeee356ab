/**
 * A minimal OTLP/HTTP JSON trace receiver on loopback, for tests: it accepts `POST /v1/traces`
 * (application/json, an ExportTraceServiceRequest) as an OpenTelemetry Collector's otlphttp receiver
 * does, answers `{}` (full success), and keeps every span with its resource's service.name. No
 * Collector binary installs here (no Debian or npm package ships one; docs/tracing.md), so this
 * stands in for it; anything that speaks OTLP/HTTP JSON to it speaks it to a Collector.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/** One received span, flattened: ids, names, times and attributes as plain values. */
export interface ReceivedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId: string | null;
  traceState: string | null;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: Record<string, string | number | boolean>;
  status: { code: number; message?: string };
}

/** A running receiver. */
export interface OtlpReceiver {
  /** Base URL: what OTEL_EXPORTER_OTLP_ENDPOINT is set to. */
  url: string;
  spans: ReceivedSpan[];
  /** The headers of each export request (to check authentication headers arrive). */
  requests: { headers: Record<string, string | string[] | undefined> }[];
  /** Spans of one trace. */
  trace(traceId: string): ReceivedSpan[];
  /** Waits until `check` holds on the spans received (polling), or fails after `timeoutMs`. */
  waitFor(check: (spans: ReceivedSpan[]) => boolean, timeoutMs?: number, what?: string): Promise<void>;
  close(): Promise<void>;
}

interface AnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string | number;
  doubleValue?: number;
}

function plain(value: AnyValue): string | number | boolean {
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.boolValue !== undefined) return value.boolValue;
  if (value.intValue !== undefined) return Number(value.intValue);
  if (value.doubleValue !== undefined) return value.doubleValue;
  throw new Error(`unsupported attribute value ${JSON.stringify(value)}`);
}

function attributes(list: { key: string; value: AnyValue }[] | undefined): Record<string, string | number | boolean> {
  return Object.fromEntries((list ?? []).map((kv) => [kv.key, plain(kv.value)]));
}

interface ExportRequest {
  resourceSpans: {
    resource?: { attributes?: { key: string; value: AnyValue }[] };
    scopeSpans: {
      spans: {
        traceId: string;
        spanId: string;
        parentSpanId?: string;
        traceState?: string;
        name: string;
        kind: number;
        startTimeUnixNano: string;
        endTimeUnixNano: string;
        attributes?: { key: string; value: AnyValue }[];
        status?: { code?: number; message?: string };
      }[];
    }[];
  }[];
}

const HEX_TRACE_ID = /^[0-9a-fA-F]{32}$/;
const HEX_SPAN_ID = /^[0-9a-fA-F]{16}$/;
const NANOS = /^\d+$/;

/**
 * Checks what the OTLP JSON encoding requires of a span (hex ids, times as decimal strings, an
 * integer kind) so a malformed export is refused with 400 as a Collector would, not silently kept.
 */
function validSpan(span: ExportRequest["resourceSpans"][number]["scopeSpans"][number]["spans"][number]): boolean {
  return (
    HEX_TRACE_ID.test(span.traceId) &&
    HEX_SPAN_ID.test(span.spanId) &&
    (span.parentSpanId === undefined || span.parentSpanId === "" || HEX_SPAN_ID.test(span.parentSpanId)) &&
    typeof span.name === "string" &&
    Number.isInteger(span.kind) &&
    NANOS.test(span.startTimeUnixNano) &&
    NANOS.test(span.endTimeUnixNano) &&
    BigInt(span.endTimeUnixNano) >= BigInt(span.startTimeUnixNano)
  );
}

/** Starts a receiver on 127.0.0.1 (port 0: any free port). */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const requests: OtlpReceiver["requests"] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const answer = (status: number, body: unknown) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(body));
      };
      if (req.method !== "POST" || req.url !== "/v1/traces") return answer(404, { message: "only POST /v1/traces" });
      if (!(req.headers["content-type"] ?? "").startsWith("application/json")) return answer(415, { message: "application/json only" });
      let body: ExportRequest;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as ExportRequest;
      } catch {
        return answer(400, { message: "invalid JSON" });
      }
      const received: ReceivedSpan[] = [];
      for (const rs of body.resourceSpans ?? []) {
        const service = String(attributes(rs.resource?.attributes)["service.name"] ?? "");
        for (const ss of rs.scopeSpans ?? []) {
          for (const span of ss.spans ?? []) {
            if (!validSpan(span)) return answer(400, { message: `invalid span ${JSON.stringify(span)}` });
            received.push({
              service,
              traceId: span.traceId.toLowerCase(),
              spanId: span.spanId.toLowerCase(),
              parentSpanId: span.parentSpanId ? span.parentSpanId.toLowerCase() : null,
              traceState: span.traceState ?? null,
              name: span.name,
              kind: span.kind,
              startTimeUnixNano: span.startTimeUnixNano,
              endTimeUnixNano: span.endTimeUnixNano,
              attributes: attributes(span.attributes),
              status: { code: span.status?.code ?? 0, ...(span.status?.message ? { message: span.status.message } : {}) },
            });
          }
        }
      }
      requests.push({ headers: req.headers });
      spans.push(...received);
      answer(200, {});
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  let closing: Promise<void> | null = null;
  return {
    url,
    spans,
    requests,
    trace: (traceId) => spans.filter((s) => s.traceId === traceId),
    async waitFor(check, timeoutMs = 10_000, what = "spans") {
      const deadline = Date.now() + timeoutMs;
      while (!check(spans)) {
        if (Date.now() > deadline) throw new Error(`${what} not received within ${timeoutMs} ms; got ${JSON.stringify(spans.map((s) => [s.service, s.name, s.traceId]))}`);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    },
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}
