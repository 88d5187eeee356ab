import { NODE_HEADER, NONCE_HEADER, REQUEST_ID_HEADER, signRequest } from "../../../schema/contracts/signing.ts";
import { DEFAULT_PRIORITY_RANK, PRIORITY_RANK_HEADER, signPriorityRank } from "../../../schema/contracts/priority.ts";
import { STREAM_REPORT_HEADER, type StreamReportMode } from "../../../schema/contracts/stream-report.ts";
import { nodeSigningKey } from "../nodes/keys.ts";
import { ApiError } from "../errors.ts";
import { countEvent } from "../platform/metrics.ts";
import type { NodeEntry } from "../routing/snapshot.ts";
import { isRetryableStatus, upstreamError } from "./upstream-error.ts";
import { SPAN_KIND, type Span, type Trace } from "../../../schema/contracts/otlp-trace.ts";
import { TRACEPARENT_HEADER, TRACESTATE_HEADER } from "../../../schema/contracts/trace-context.ts";

/** One attempt's result, for logs. */
export interface Attempt {
  nodeId: string;
  outcome: string;
}

/** A backplane's successful response and the node that gave it. */
export interface Forwarded {
  response: Response;
  node: NodeEntry;
  attempts: Attempt[];
  /** Ends the serving node's in-flight tracking (`track`): call when the response has ended. */
  release: () => void;
}

/** What forwarding needs. */
export interface ForwardRequest {
  /** POST unless given (calls on a stored response also GET and DELETE). */
  method?: "POST" | "GET" | "DELETE";
  path: string;
  body: string | Uint8Array<ArrayBuffer>;
  /** The body's content type when it is not JSON (a multipart upload). */
  contentType?: string;
  /** The body for a given node, when it differs per node (a Responses id names its node); else `body`. */
  bodyFor?: (node: NodeEntry) => Promise<string>;
  requestId: string;
  masterSecret: string;
  connectTimeoutMs: number;
  /** Aborts the upstream request when the client goes away. */
  clientSignal: AbortSignal | undefined;
  /** At most this many nodes are tried… */
  maxAttempts: number;
  /** …within this much time in all (milliseconds, from the first attempt). */
  deadlineMs: number;
  /** Told about each node's answer: true for a usable response, false for a node failure (breaker input). */
  onNodeResult?: (node: NodeEntry, ok: boolean) => void;
  /** Marks a request as in flight to a node; returns the function that ends it (routing/sent.ts). */
  track?: (node: NodeEntry) => () => void;
  /** Streams: ask the node to tap the stream itself and report how it ended (schema/contracts/stream-report.ts). */
  streamReport?: StreamReportMode;
  /** Return the engine's 4xx answers (except 401 and 429) as they are instead of throwing them. */
  relayClientErrors?: boolean;
  /**
   * The request's trace (tracing/): each attempt is an `upstream attempt` span, and the node gets a
   * `traceparent` naming it. It is outside the signature, like the routing headers: it only links
   * telemetry, and the signed nonce keeps the request replay-proof with or without it.
   */
  trace?: Trace | null;
  /** The request's scheduling rank (priority/class.ts), signed for the backplane, which passes it to engines with priority scheduling. */
  priorityRank?: number;
}

/** The message of a node that could not be reached at all (callers that name the node tell it apart by this). */
export const UNREACHABLE_MESSAGE = "The GPU node serving this model could not be reached. Retry the request.";

const urls = new Map<string, string>();

/** `path` on the node at `base`, resolved once per isolate (a URL parse per request showed in profiles). */
function nodeUrl(base: string, path: string): string {
  const key = `${base} ${path}`;
  let url = urls.get(key);
  if (url === undefined) {
    url = new URL(path, base).href;
    if (urls.size >= 1_000) urls.clear();
    urls.set(key, url);
  }
  return url;
}

/** Why a request left a node for the next one, for `switchyard_failovers_total`. */
function failoverReason(outcome: string): string {
  if (outcome === "timeout") return "timeout";
  if (outcome.startsWith("unreachable")) return "unreachable";
  if (outcome === "503" || outcome === "429") return "capacity";
  if (outcome === "401") return "secret";
  if (outcome === "401 clock") return "clock";
  return "status_5xx";
}

/**
 * Sends the signed request to the first candidate that answers; moves on to the next one when a
 * node cannot be reached, times out before its headers, or answers 5xx/429 (nothing has reached the
 * client yet, so retrying elsewhere is safe). A 4xx from the engine is the caller's error and is
 * returned as such. At most `maxAttempts` nodes are tried, within `deadlineMs` in all.
 */
export async function forwardToBackplane(req: ForwardRequest, candidates: NodeEntry[]): Promise<Forwarded> {
  const attempts: Attempt[] = [];
  let lastError: ApiError | null = null;
  const deadline = Date.now() + req.deadlineMs;
  for (const node of candidates.slice(0, req.maxAttempts)) {
    const remaining = deadline - Date.now();
    if (remaining <= 0 || req.clientSignal?.aborted) break;
    const previous = attempts.at(-1);
    if (previous) countEvent("switchyard_failovers_total", { reason: failoverReason(previous.outcome) });
    const key = await nodeSigningKey(req.masterSecret, node.id, node.secretVersion);
    const method = req.method ?? "POST";
    const body = req.bodyFor ? await req.bodyFor(node) : req.body;
    const signed = await signRequest(key, method, req.path, body);
    // The default rank (standard, no reservation) is what the backplane gives a request without the header: no MAC needed.
    const rank = req.priorityRank === undefined || req.priorityRank === DEFAULT_PRIORITY_RANK ? null : await signPriorityRank(key, signed[NONCE_HEADER], req.priorityRank);
    const controller = new AbortController();
    const onClientAbort = () => controller.abort();
    req.clientSignal?.addEventListener("abort", onClientAbort);
    const timer = setTimeout(() => controller.abort(), Math.min(req.connectTimeoutMs, remaining));
    const release = req.track?.(node) ?? (() => {});
    const span = req.trace?.start("upstream attempt", { kind: SPAN_KIND.client }).set("switchyard.node.id", node.id).set("cloud.region", node.regionId).set("switchyard.attempt", attempts.length + 1);
    let response: Response;
    try {
      response = await fetch(nodeUrl(node.url, req.path), {
        method,
        headers: {
          ...(body === "" ? {} : { "content-type": req.contentType ?? "application/json" }),
          accept: "application/json, text/event-stream",
          [NODE_HEADER]: node.id,
          [REQUEST_ID_HEADER]: req.requestId,
          ...(req.streamReport ? { [STREAM_REPORT_HEADER]: req.streamReport } : {}),
          ...signed,
          ...(rank === null ? {} : { [PRIORITY_RANK_HEADER]: rank }),
          ...(req.trace && span ? traceHeaders(req.trace, span) : {}),
        },
        body: body === "" ? undefined : body,
        signal: controller.signal,
      });
    } catch (err) {
      clearTimeout(timer);
      release();
      const timedOut = controller.signal.aborted && !req.clientSignal?.aborted;
      attempts.push({ nodeId: node.id, outcome: timedOut ? "timeout" : `unreachable: ${String(err)}` });
      if (req.clientSignal?.aborted) span?.set("error.type", "client_gone").end();
      else failAttempt(span, timedOut ? "timeout" : "unreachable", timedOut ? "no response headers in time" : String(err));
      if (!req.clientSignal?.aborted) req.onNodeResult?.(node, false);
      lastError = timedOut
        ? new ApiError("upstream_timeout", "The GPU node did not start answering in time. Retry the request.")
        : new ApiError("upstream_error", UNREACHABLE_MESSAGE);
      continue;
    }
    clearTimeout(timer);
    const relayed = req.relayClientErrors === true && response.status >= 400 && response.status < 500 && response.status !== 401 && response.status !== 429;
    if (response.ok || relayed) {
      attempts.push({ nodeId: node.id, outcome: String(response.status) });
      span?.set("http.response.status_code", response.status).end();
      req.onNodeResult?.(node, true);
      return { response, node, attempts, release };
    }
    release();
    const text = await response.text();
    // A backplane refuses a signature outside its clock window as "stale" (schema/contracts/signing.ts).
    const clockRefused = response.status === 401 && text.includes("signature stale");
    attempts.push({ nodeId: node.id, outcome: clockRefused ? "401 clock" : String(response.status) });
    span?.set("http.response.status_code", response.status);
    // Retried statuses are the node's failure; any other is the caller's error, passed on as it is.
    if (isRetryableStatus(response.status) || response.status === 401) failAttempt(span, `status_${response.status}`, `the node answered ${response.status}`);
    else span?.end();
    // 5xx is the node failing (breaker input); 503/429 is a healthy node at capacity, and 4xx the caller's.
    req.onNodeResult?.(node, !(response.status >= 500 && response.status !== 503));
    if (isRetryableStatus(response.status) || response.status === 401) {
      // 401 from a backplane means the node and gateway disagree on the secret: an operator problem,
      // not the caller's, so try elsewhere and report a 502 if nothing else works.
      lastError =
        response.status === 503 || response.status === 429
          ? new ApiError("no_capacity", "Every GPU node serving this model is at capacity. Retry in a few seconds.", {
              headers: { "retry-after": response.headers.get("retry-after") ?? "1" },
            })
          : clockRefused
            ? new ApiError("upstream_error", "The GPU node refused the gateway's request as outside its clock window (its clock or the gateway's is off by more than 60 s). Retry; operators: check NTP on the node (docs/runbooks/clock-skew.md).")
            : response.status === 401
              ? new ApiError("upstream_error", "The GPU node refused the gateway's signature (node secret mismatch). Retry; operators: check BACKPLANE_SECRET.")
              : upstreamError(response.status, text);
      continue;
    }
    throw upstreamError(response.status, text);
  }
  throw lastError ?? new ApiError("no_capacity", "No GPU node is serving this model right now. Retry in a few seconds.", {
    headers: { "retry-after": "5" },
  });
}

/** The attempt's trace context for the node: its span as the parent, the caller's tracestate passed on. */
function traceHeaders(trace: Trace, span: Span): Record<string, string> {
  const headers: Record<string, string> = { [TRACEPARENT_HEADER]: trace.traceparentFor(span) };
  if (trace.tracestate) headers[TRACESTATE_HEADER] = trace.tracestate;
  return headers;
}

/** Ends a failed attempt's span with why the request moves on (which keeps the trace: always exported). */
function failAttempt(span: Span | undefined, reason: string, message: string): void {
  span?.set("switchyard.failover.reason", reason).set("error.type", reason).fail(message).end();
}
