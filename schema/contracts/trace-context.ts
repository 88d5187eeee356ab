/**
 * W3C Trace Context level 1 (https://www.w3.org/TR/trace-context/), shared by the gateway and the
 * backplane: the `traceparent` header parsed strictly and formatted, trace and span ids made, the
 * head-sampling decision on a trace id, and the OTLP exporter's header setting. Only WebCrypto's
 * `getRandomValues` is used, so the same code runs in workerd and in Node.
 */

/** The header carrying `version-traceid-parentid-flags`. */
export const TRACEPARENT_HEADER = "traceparent";
/** The vendors' header that travels with it; passed on as it came, never parsed. */
export const TRACESTATE_HEADER = "tracestate";

/** A valid `traceparent`: the trace, the caller's span in it, and whether the caller sampled it. */
export interface TraceParent {
  /** 32 lowercase hex digits, not all zero. */
  traceId: string;
  /** The parent-id: 16 lowercase hex digits, not all zero. */
  spanId: string;
  /** The `sampled` flag (bit 0 of trace-flags). */
  sampled: boolean;
}

const LOWER_HEX = /^[0-9a-f]+$/;
const ZERO_TRACE_ID = "0".repeat(32);
const ZERO_SPAN_ID = "0".repeat(16);
/** Version 00's length: 2 + 1 + 32 + 1 + 16 + 1 + 2. */
const V00_LENGTH = 55;

/**
 * Parses a `traceparent` value by the level 1 rules (§ 3.2): lowercase hex only, `-` separators,
 * version `ff` invalid, version `00` exactly 55 characters, a trace-id or parent-id of all zeros
 * invalid. A later version is read for its first four fields when it is 55 characters or continues
 * with `-` (§ 3.2.4: "parse trace-id, parent-id and trace-flags, ignore the rest"). Returns null for
 * anything else, including several comma-joined headers: the caller then starts a new trace and
 * drops `tracestate` (§ 3.3: a vendor that cannot parse traceparent must not use tracestate).
 */
export function parseTraceparent(value: string | null | undefined): TraceParent | null {
  if (typeof value !== "string" || value.length < V00_LENGTH) return null;
  const version = value.slice(0, 2);
  if (!LOWER_HEX.test(version) || version === "ff") return null;
  if (version === "00" ? value.length !== V00_LENGTH : value.length > V00_LENGTH && value[V00_LENGTH] !== "-") return null;
  if (value[2] !== "-" || value[35] !== "-" || value[52] !== "-") return null;
  const traceId = value.slice(3, 35);
  const spanId = value.slice(36, 52);
  const flags = value.slice(53, 55);
  if (!LOWER_HEX.test(traceId) || !LOWER_HEX.test(spanId) || !LOWER_HEX.test(flags)) return null;
  if (traceId === ZERO_TRACE_ID || spanId === ZERO_SPAN_ID) return null;
  return { traceId, spanId, sampled: (Number.parseInt(flags, 16) & 1) === 1 };
}

/** A version 00 `traceparent` naming `spanId` as the parent of whatever the receiver does. */
export function formatTraceparent(traceId: string, spanId: string, sampled: boolean): string {
  return `00-${traceId}-${spanId}-${sampled ? "01" : "00"}`;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

function randomHex(bytes: number): string {
  const buffer = crypto.getRandomValues(new Uint8Array(bytes));
  let out = "";
  for (let i = 0; i < buffer.length; i++) out += HEX[buffer[i] ?? 0];
  return out;
}

/** A new trace id: 128 random bits (never all zero, which § 3.2.2.3 makes invalid). */
export function newTraceId(): string {
  for (;;) {
    const id = randomHex(16);
    if (id !== ZERO_TRACE_ID) return id;
  }
}

/** A new span id: 64 random bits (never all zero). */
export function newSpanId(): string {
  for (;;) {
    const id = randomHex(8);
    if (id !== ZERO_SPAN_ID) return id;
  }
}

/** 2^52: the trace id's last 13 hex digits as a fraction of it. */
const TWO_POW_52 = 2 ** 52;

/**
 * Head sampling on the trace id alone, so every service that sees the same trace decides the same:
 * its rightmost 52 bits (random in ids made here and, per level 2's random flag, in most others)
 * read as a fraction in [0, 1), kept when below `ratio`.
 */
export function sampledByRatio(traceId: string, ratio: number): boolean {
  if (ratio >= 1) return true;
  if (ratio <= 0) return false;
  return Number.parseInt(traceId.slice(-13), 16) / TWO_POW_52 < ratio;
}

/**
 * Parses OTEL_EXPORTER_OTLP_HEADERS (`key1=value1,key2=value2`, values percent-encoded, as the
 * OpenTelemetry SDK environment variables specify). The value is a secret: errors name the entry's
 * position, never its text.
 */
export function parseOtlpHeaders(raw: string): Record<string, string> {
  const headers: Record<string, string> = {};
  const entries = raw.split(",").map((e) => e.trim()).filter((e) => e !== "");
  entries.forEach((entry, i) => {
    const eq = entry.indexOf("=");
    const key = eq > 0 ? entry.slice(0, eq).trim().toLowerCase() : "";
    if (!/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(key)) throw new Error(`entry ${i + 1} is not key=value with a valid header name`);
    let value: string;
    try {
      value = decodeURIComponent(entry.slice(eq + 1).trim());
    } catch {
      throw new Error(`entry ${i + 1} has a value that is not valid percent-encoding`);
    }
    headers[key] = value;
  });
  return headers;
}
