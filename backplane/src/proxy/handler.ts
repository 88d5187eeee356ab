import type { IncomingMessage, ServerResponse } from "node:http";
import { parseReportMode, STREAM_REPORT_HEADER } from "../../../schema/contracts/stream-report.ts";
import type { BackplaneConfig } from "../config.ts";
import type { EnginePool } from "../engines/pool.ts";
import type { EngineRuntime } from "../engines/runtime.ts";
import { sendError } from "../errors.ts";
import type { Log } from "../log.ts";
import type { BackplaneMetrics } from "../metrics/backplane.ts";
import { attemptEngine, type AttemptOutcome } from "./attempt.ts";
import { engineBody } from "./priority.ts";
import { DEFAULT_PRIORITY_RANK } from "../../../schema/contracts/priority.ts";
import type { StreamReports } from "./reports.ts";
import { responseIdsOf, serveStoredResponseCall, type ResponseEngines } from "./stored-responses.ts";
import { storedResponseCall } from "../../../schema/contracts/responses.ts";
import { AUDIO_PATHS, readAudioForm } from "./audio-form.ts";
import { parseProfileWire, PROFILE_FIELD, PROFILE_TIMEOUT_CODE, type ProfileWire } from "../../../schema/contracts/stream-profile.ts";
import { SPAN_KIND, type Trace } from "../../../schema/contracts/otlp-trace.ts";
import { type BackplaneTracer, endEngineSpan, ENGINE_SPAN } from "../tracing/tracer.ts";

/** What the inference handler needs from the daemon. */
export interface ProxyDeps {
  pool: EnginePool;
  config: Pick<BackplaneConfig, "retryBackoffMs" | "firstByteTimeoutMs" | "requestTimeoutMs">;
  metrics: BackplaneMetrics;
  log: Log;
  isDraining: () => boolean;
  /** Reports of reported streams, served at POST /stream-reports. */
  reports: StreamReports;
  /** Which engine made each stored response (Responses API). */
  responses: ResponseEngines;
  /** Records and exports the requests' traces (tracing/); absent or null when tracing is off. */
  tracer?: BackplaneTracer | null;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

function parseRequest(body: Uint8Array): { model: string; stream: boolean; fields: Record<string, unknown> } | null {
  try {
    const parsed = JSON.parse(Buffer.from(body).toString("utf8")) as Record<string, unknown>;
    return typeof parsed.model === "string" && parsed.model !== "" ? { model: parsed.model, stream: parsed.stream === true, fields: parsed } : null;
  } catch {
    return null;
  }
}

/**
 * Serves one inference request that the gateway signed: picks the least loaded engine serving
 * the model, waits for a slot (or sheds at once with 503 when every queue is full), and tries again
 * when the engine fails before its first byte: at once on another engine serving the model, else on
 * the same one after the configured backoff (1 s, 2 s, 4 s by default). When every try failed it
 * answers 503 with Retry-After, so the gateway can go to another node; nothing the gateway accepted
 * is dropped silently. `gatewayGone` fires when the gateway's connection closes, at any point: the
 * engine request (or the wait for a slot) is then abandoned at once. `rank` is the gateway's signed
 * scheduling rank (priority.ts), given to engines with priority scheduling.
 */
export async function handleInference(deps: ProxyDeps, req: IncomingMessage, res: ServerResponse, signedBody: Uint8Array, gatewayGone: AbortSignal, rank: number | null = null): Promise<void> {
  const path = (req.url ?? "/").split("?")[0] ?? "/";
  if (!deps.tracer) return serveInference(deps, req, res, signedBody, gatewayGone, path, null, rank);
  const trace = deps.tracer.begin(req, path);
  try {
    await serveInference(deps, req, res, signedBody, gatewayGone, path, trace, rank);
  } catch (err) {
    trace.root.fail(err instanceof Error ? err.message : String(err));
    throw err;
  } finally {
    // The status the gateway got (500 when the handler threw before answering: server.ts sends it).
    deps.tracer.finish(trace, res.headersSent ? res.statusCode : 500);
  }
}

/** handleInference's work, with the request's trace (null when tracing is off). */
async function serveInference(deps: ProxyDeps, req: IncomingMessage, res: ServerResponse, signedBody: Uint8Array, gatewayGone: AbortSignal, path: string, trace: Trace | null, rank: number | null): Promise<void> {
  let body = signedBody;
  const { pool, metrics, log } = deps;
  // Calls on a stored response run no generation: a draining node still answers them.
  const stored = storedResponseCall(path);
  if (stored) return serveStoredResponseCall({ pool, engines: deps.responses }, req, res, stored.id, gatewayGone);
  if (deps.isDraining()) {
    metrics.shed.inc({ reason: "draining" });
    return sendError(res, "draining", "This node is draining and takes no new requests. Retry on another node.", { "retry-after": "1" });
  }
  // Audio uploads are multipart forms (audio-form.ts); everything else is a JSON body.
  const form = AUDIO_PATHS.has(path) ? await readAudioForm(body) : null;
  const parsed = form ? { ...form, fields: {} } : AUDIO_PATHS.has(path) ? null : parseRequest(body);
  if (!parsed) {
    return sendError(res, "bad_request", AUDIO_PATHS.has(path) ? "The body must be a multipart/form-data upload with a 'model' field." : "The body must be a JSON object with a 'model' string.");
  }
  const { model, stream } = parsed;
  trace?.root.set("gen_ai.request.model", model).set("switchyard.stream", stream);
  // An agent streaming profile (stream-profile.ts): taken out of the body, which then asks the engine for running usage.
  const profiled = stream && PROFILE_FIELD in parsed.fields ? profiledBody(parsed.fields) : null;
  if (profiled) body = profiled.body;
  const profile = profiled?.profile ?? null;
  // A new response continuing a stored one goes to the engine that holds it (when remembered).
  const ids = path === "/v1/responses" ? responseIdsOf(parsed.fields) : null;
  const holder = ids?.previous ? deps.responses.engineOf(ids.previous) : undefined;
  const reportMode = stream ? parseReportMode(req.headers[STREAM_REPORT_HEADER]) : null;

  const triedAndFailed = new Set<string>();
  const backoff = deps.config.retryBackoffMs;
  const started = performance.now();
  // A profile's time limit counts from here; before the engine's first byte it also ends waits for a slot.
  const profileEndsAt = profile ? started + profile.wire.timeout_ms : Infinity;
  const stop = profile ? deadlineSignal(gatewayGone, profile.wire.timeout_ms) : null;
  try {
    let waits = 0;
    for (let attempt = 0; ; attempt++) {
      if (gatewayGone.aborted) return;
      if (profile && performance.now() >= profileEndsAt) return sendProfileTimeout(res, profile.wire, model, req.headers["x-request-id"]);
      const candidates = holder === undefined ? pool.candidates(model) : pool.candidates(model).filter((e) => e.id === holder);
      if (candidates.length === 0) {
        if (!pool.serves(model) && attempt === 0) {
          return sendError(res, "model_not_found", `The model \`${model}\` is not served by this node.`);
        }
        metrics.requests.inc({ engine: "none", outcome: "unavailable" });
        return sendError(res, "engine_unavailable", `No healthy engine serves '${model}' on this node right now.`, { "retry-after": "5" });
      }
      const fresh = candidates.filter((e) => !triedAndFailed.has(e.id));
      let engine: EngineRuntime | undefined = fresh[0];
      if (!engine) {
        // Every engine serving the model failed this request once: wait, then retry the least loaded.
        const wait = backoff[waits++];
        if (wait === undefined) break;
        metrics.retries.inc({ kind: "backoff" });
        await sleep(Math.min(wait, profileEndsAt - performance.now()), stop?.signal ?? gatewayGone);
        if (gatewayGone.aborted) return;
        if (performance.now() >= profileEndsAt) continue;
        triedAndFailed.clear();
        engine = pool.candidates(model)[0];
        if (!engine) continue;
      } else if (attempt > 0) {
        metrics.retries.inc({ kind: "other_engine" });
      }

      const slot = acquireSlot(pool.candidates(model), engine, stop?.signal ?? gatewayGone, rank ?? DEFAULT_PRIORITY_RANK);
      if (!slot) {
        metrics.shed.inc({ reason: "queue_full" });
        return sendError(res, "overloaded", `Every engine serving '${model}' on this node is at capacity. Retry on another node.`, { "retry-after": "1" });
      }
      const granted = await slot.outcome;
      if (!granted.ok) {
        if (granted.reason !== "aborted") return sendError(res, "draining", "This node is draining. Retry on another node.", { "retry-after": "1" });
        // Aborted: the gateway went away, or the profile's time ran out while waiting for a slot.
        if (gatewayGone.aborted || !profile) return;
        continue;
      }
      const span = trace?.start(ENGINE_SPAN, { kind: SPAN_KIND.client }).set("switchyard.engine.id", slot.engine.id).set("switchyard.attempt", attempt + 1);
      let outcome: AttemptOutcome;
      try {
        outcome = await attemptEngine(
          {
            engineUrl: slot.engine.config.url,
            engineId: slot.engine.id,
            apiKey: slot.engine.config.apiKey,
            method: req.method ?? "POST",
            path: req.url ?? "/",
            // vLLM's `priority`: the gateway's rank on a priority-scheduled engine, removed on any other.
            body: form ? body : engineBody(body, parsed.fields, path, slot.engine.config.priorityScheduling === true, rank),
            contentType: form?.contentType,
            accept: req.headers.accept,
            requestId: typeof req.headers["x-request-id"] === "string" ? req.headers["x-request-id"] : undefined,
            stream,
            firstByteTimeoutMs: Math.max(1, Math.min(stream ? deps.config.firstByteTimeoutMs : deps.config.requestTimeoutMs, profileEndsAt - performance.now())),
            report: reportMode ? { mode: reportMode, store: deps.reports } : null,
            profile: profile ? { wire: profile.wire, clientContinuous: profile.clientContinuous, deadlineAt: profileEndsAt } : null,
            trace: trace && span ? { traceparent: trace.traceparentFor(span), tracestate: trace.tracestate } : null,
          },
          res,
          gatewayGone,
        );
      } finally {
        granted.release();
      }
      endEngineSpan(span, outcome);
      const engineId = slot.engine.id;
      const fields = { requestId: req.headers["x-request-id"], engine: engineId, model, attempt };
      if (ids?.id && outcome.kind === "done") deps.responses.remember(ids.id, engineId);
      switch (outcome.kind) {
        case "done":
        case "client_error":
          pool.recordResult(engineId, true);
          metrics.requests.inc({ engine: engineId, outcome: outcome.kind === "done" ? "ok" : "client_error" });
          // An exported trace's id is the exemplar of the buckets it fell in (OpenMetrics scrapes).
          metrics.firstByte.observe({ engine: engineId }, outcome.firstByteMs / 1000, trace?.exported ? trace.traceId : undefined);
          metrics.latency.observe({ engine: engineId }, (performance.now() - started) / 1000, trace?.exported ? trace.traceId : undefined);
          log("request", { ...fields, status: outcome.status, firstByteMs: Math.round(outcome.firstByteMs), latencyMs: Math.round(performance.now() - started) }, "debug");
          return;
        case "failed_after_first_byte":
          pool.recordResult(engineId, false);
          metrics.requests.inc({ engine: engineId, outcome: "failed_mid_stream" });
          log("request_failed_mid_stream", { ...fields, reason: outcome.reason }, "warn");
          return;
        case "client_gone":
          metrics.requests.inc({ engine: engineId, outcome: "cancelled" });
          return;
        case "timed_out":
          pool.recordResult(engineId, true);
          metrics.requests.inc({ engine: engineId, outcome: "profile_timeout" });
          log("stream_profile_timeout", { ...fields, profile: profile?.wire.name, deliveredTokens: outcome.deliveredTokens }, "info");
          return;
        case "failed_before_first_byte":
          pool.recordResult(engineId, false);
          metrics.errors.inc({ engine: engineId, reason: "before_first_byte" });
          log("engine_attempt_failed", { ...fields, reason: outcome.reason }, "warn");
          triedAndFailed.add(engineId);
          if (gatewayGone.aborted) return;
      }
    }
  } finally {
    stop?.clear();
  }
  metrics.requests.inc({ engine: "none", outcome: "unavailable" });
  sendError(res, "engine_unavailable", `Every try on the engines serving '${model}' failed (${backoff.length} retries with backoff). Retry on another node.`, { "retry-after": "5" });
}

/**
 * A slot on `preferred`, or on the next candidate whose queue has room; null when every queue is
 * full (load shedding: answer 503 at once instead of holding the request).
 */
function acquireSlot(
  candidates: EngineRuntime[],
  preferred: EngineRuntime,
  signal: AbortSignal,
  rank: number,
): { engine: EngineRuntime; outcome: NonNullable<ReturnType<EngineRuntime["limiter"]["tryAcquire"]>> } | null {
  const order = [preferred, ...candidates.filter((c) => c.id !== preferred.id)];
  for (const engine of order) {
    const outcome = engine.limiter.tryAcquire(signal, rank);
    if (outcome) return { engine, outcome };
  }
  return null;
}

/**
 * The engine's body for a profiled stream: the profile field removed, and running usage asked for
 * (each chunk's token count, which the re-chunker sizes chunks by); whether the client itself asked
 * for running usage is kept, so only then does it see it.
 */
function profiledBody(fields: Record<string, unknown>): { body: Uint8Array; profile: { wire: ProfileWire; clientContinuous: boolean } | null } {
  const wire = parseProfileWire(fields[PROFILE_FIELD]);
  const { [PROFILE_FIELD]: _profile, ...rest } = fields;
  // A profile this backplane cannot read (a newer gateway's): the stream is served as it comes.
  if (!wire) return { body: Buffer.from(JSON.stringify(rest)), profile: null };
  const options = typeof rest.stream_options === "object" && rest.stream_options !== null ? (rest.stream_options as Record<string, unknown>) : {};
  const clientContinuous = options.continuous_usage_stats === true;
  const body = Buffer.from(JSON.stringify({ ...rest, stream_options: { ...options, include_usage: true, continuous_usage_stats: true } }));
  return { body, profile: { wire, clientContinuous } };
}

/** An abort signal that fires when `parent` does or after `ms`; `clear` drops its timer and listener. */
function deadlineSignal(parent: AbortSignal, ms: number): { signal: AbortSignal; clear(): void } {
  const controller = new AbortController();
  const abort = () => controller.abort();
  const timer = setTimeout(abort, ms);
  parent.addEventListener("abort", abort, { once: true });
  return {
    signal: controller.signal,
    clear() {
      clearTimeout(timer);
      parent.removeEventListener("abort", abort);
    },
  };
}

/**
 * A profile's time ran out before the engine's first byte: a 200 stream that says so in band,
 * with a usage chunk of zero tokens (nothing was delivered, and the engine never answered).
 */
function sendProfileTimeout(res: ServerResponse, profile: ProfileWire, model: string, requestId: string | string[] | undefined): void {
  if (res.headersSent) return;
  const id = `chatcmpl-${typeof requestId === "string" ? requestId : "timeout"}`;
  const usage = { id, object: "chat.completion.chunk", created: Math.floor(Date.now() / 1000), model, choices: [], usage: { prompt_tokens: 0, total_tokens: 0, completion_tokens: 0 } };
  const seconds = Math.round(profile.timeout_ms / 100) / 10;
  const message = `The '${profile.name}' streaming profile's ${seconds} s time limit passed before the engine started answering (it is busy). Retry later, or use the plain route, which has no limit.`;
  const error = { error: { message, type: "timeout_error", param: null, code: PROFILE_TIMEOUT_CODE } };
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", "x-switchyard-profile": profile.name });
  res.end(`data: ${JSON.stringify(usage)}\n\ndata: ${JSON.stringify(error)}\n\ndata: [DONE]\n\n`);
}
