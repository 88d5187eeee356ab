import type { Context } from "hono";
import type { AppEnv } from "../env.ts";
import { ApiError, sseErrorEvent, type ErrorCode } from "../errors.ts";
import { usageOutboxKey } from "../metering/flush.ts";
import { settleRequest } from "../metering/request-end.ts";
import { countEvent } from "../platform/metrics.ts";
import { usageRow } from "../metering/record.ts";
import { enqueue } from "../platform/outbox.ts";
import { auditOutboxKey } from "../audit/outbox.ts";
import { takeAuthAudit } from "../auth/middleware.ts";
import { forwardToBackplane, type Forwarded } from "../proxy/forward.ts";
import { PRIORITY_HEADER, requestPriority } from "../priority/class.ts";
import { admit, maxCost, rateTokens } from "../limits/admission.ts";
import { readJson } from "../proxy/json-tap.ts";
import type { StreamOutcome } from "../proxy/usage.ts";
import { keepAliveStream } from "../proxy/keepalive.ts";
import { BROKEN_MESSAGE, tapSse } from "../proxy/sse-tap.ts";
import { anthropicSseError } from "../anthropic/errors.ts";
import { validateMessages } from "../anthropic/validate.ts";
import { newResponseId } from "../responses/ids.ts";
import { responsesSseError, storedResponseNode } from "../responses/routes.ts";
import { validateResponses, type ResponsesRequest } from "../responses/validate.ts";
import type { SseDialect } from "../../../schema/contracts/usage-tap.ts";
import { pipeReported } from "../proxy/reported-stream.ts";
import { askReport } from "../proxy/report-asks.ts";
import { isReportToken, STREAM_REPORT_HEADER } from "../../../schema/contracts/stream-report.ts";
import { costClass, validateRequest, type Endpoint, type ProxyRequest } from "../proxy/validate.ts";
import { validateExtra } from "../extras/validate.ts";
import { isAudioEndpoint, MAX_AUDIO_BYTES, validateAudio, type AudioEndpoint } from "../audio/validate.ts";
import { claimTrial, recordFailure, recordSuccess } from "../routing/breaker.ts";
import { callerLocation, REGION_HEADER } from "../routing/geo.ts";
import { planRoute, type RouteInput, type RoutePlan } from "../routing/pick.ts";
import { routeToLoadedAdapter } from "../routing/adapters.ts";
import { loadSince, sentSince, trackSend } from "../routing/sent.ts";
import { hasReservation, streamProgress, usageWindow } from "../routing/reservation-usage.ts";
import { awaitTurn, endsSlot, roomForRank } from "../queue/turn.ts";
import { isolateLive, rememberCircuit } from "../platform/hot-state.ts";
import type { NodeEntry } from "../routing/snapshot.ts";
import { catalogueModel, keyAllows, underModelId } from "../routing/aliases.ts";
import { captureBytes, conversationRecord, StreamCapture, type CapturedBody } from "../conversations/capture.ts";
import type { UsageRow } from "../metering/record.ts";
import type { StreamProfile } from "../profiles/types.ts";
import { profiledRequest } from "../profiles/profiles.ts";
import { COUNCIL_MODEL_PREFIX, councilChat } from "../council/routes.ts";
import { describeRequest, describeRoute, holdAnswer, recordStream, recordUsage, traced } from "../tracing/request.ts";
import { lookupCache, serveHit, BYPASS, CACHE_HEADER } from "../cache/serve.ts";

const PATHS: Record<Endpoint, string> = {
  chat: "/v1/chat/completions",
  completions: "/v1/completions",
  embeddings: "/v1/embeddings",
  messages: "/v1/messages",
  count_tokens: "/v1/messages/count_tokens",
  responses: "/v1/responses",
  // vLLM's own paths (no /v1 for these; its /v1/rerank only warns and points to /rerank).
  rerank: "/rerank",
  score: "/score",
  tokenize: "/tokenize",
  detokenize: "/detokenize",
  transcriptions: "/v1/audio/transcriptions",
  translations: "/v1/audio/translations",
};
/** The key scope an endpoint needs; tokenizing serves both kinds of model, so either scope will do. */
const SCOPE: Record<Endpoint, "chat" | "embeddings" | "either"> = {
  chat: "chat",
  completions: "chat",
  embeddings: "embeddings",
  messages: "chat",
  count_tokens: "chat",
  responses: "chat",
  rerank: "embeddings",
  score: "embeddings",
  tokenize: "either",
  detokenize: "either",
  // Speech to text is generation (a decoder writes the text): the chat scope.
  transcriptions: "chat",
  translations: "chat",
};
/** The SSE dialect of each endpoint's streams (schema/contracts/usage-tap.ts). */
const DIALECT: Record<Endpoint, SseDialect> = {
  chat: "openai",
  completions: "openai",
  embeddings: "openai",
  messages: "anthropic",
  count_tokens: "anthropic",
  responses: "responses",
  rerank: "openai",
  score: "openai",
  tokenize: "openai",
  detokenize: "openai",
  // vLLM's transcription chunks are chat-shaped (`choices[].delta.content`, a usage chunk with empty choices).
  transcriptions: "openai",
  translations: "openai",
};
const MAX_BODY_BYTES = 10 * 1024 * 1024;
/** Audio uploads: the file's 25 MB and the form around it. */
const MAX_AUDIO_BODY_BYTES = MAX_AUDIO_BYTES + 64 * 1024;
const utf8 = new TextDecoder();

/**
 * Handles one inference request (OpenAI's routes, Responses, Anthropic's Messages and vLLM's rerank,
 * score and tokenize routes; docs/api.md): validate, check the key may use the model, forward signed
 * to a backplane, pass the response through while learning its usage, and record that usage in
 * `waitUntil`. Nothing here queries Postgres.
 */
export function proxyHandler(endpoint: Endpoint) {
  return async (c: Context<AppEnv>): Promise<Response> => serveProxy(c, endpoint, await readBody(c, endpoint));
}

/** The request's body as bytes, read once (their count prices the request, limits/pricing.ts); too large is a 413. */
export async function readBody(c: Context<AppEnv>, endpoint: Endpoint): Promise<ArrayBuffer> {
  const audio = isAudioEndpoint(endpoint);
  const maxBytes = audio ? MAX_AUDIO_BODY_BYTES : MAX_BODY_BYTES;
  const tooLarge = () => new ApiError("request_too_large", audio ? "Audio uploads are limited to 25 MB: split the audio, or send it compressed (FLAC, MP3, Opus)." : "Request bodies are limited to 10 MB.");
  const declared = Number(c.req.header("content-length") ?? "0");
  if (declared > maxBytes) throw tooLarge();
  const bytes = await c.req.raw.arrayBuffer();
  if (bytes.byteLength > maxBytes) throw tooLarge();
  return bytes;
}

/** What a route built on the inference path adds to it (other dialects' routes, streaming profiles). */
export interface ProxyOptions {
  /** An agent streaming profile cuts and paces the stream (profiles/). */
  profile?: StreamProfile;
}

/**
 * The inference path for a body already read (`bytes`, in `endpoint`'s dialect): routes that
 * translate another API into one of the endpoints (Ollama's, the streaming profiles') call this
 * with the translated body, so limits, budgets, routing, caches and metering apply unchanged.
 */
export async function serveProxy(c: Context<AppEnv>, endpoint: Endpoint, bytes: ArrayBuffer, opts: ProxyOptions = {}): Promise<Response> {
  const deps = c.get("deps");
  const identity = c.get("identity");
  c.set("apiRoute", endpoint);
  const scope = SCOPE[endpoint];
  if (scope === "either" ? !identity.scopes.includes("chat") && !identity.scopes.includes("embeddings") : !identity.scopes.includes(scope)) {
    throw new ApiError("permission_denied", `This API key lacks the '${scope === "either" ? "chat' or 'embeddings" : scope}' scope needed for ${PATHS[endpoint]}.`);
  }
  const audio = isAudioEndpoint(endpoint);
  const bodyBytes = bytes.byteLength;
  const stored: ResponsesRequest | null = endpoint === "responses" ? validateResponses(utf8.decode(bytes)) : null;
  const asked: ProxyRequest =
    stored ?? (audio ? validateAudio(endpoint, bytes, c.req.header("content-type")) : validateBody(endpoint, utf8.decode(bytes)));
  const dialect = DIALECT[endpoint];
  const anthropic = dialect === "anthropic";
  /** The in-band event that ends a stream which failed after its headers went out, in the client's dialect. */
  const failureEvent = (message: string, code: ErrorCode) =>
    dialect === "anthropic" ? anthropicSseError(message, code, deps.requestId) : dialect === "responses" ? responsesSseError(message, code) : sseErrorEvent(message, code);

  // The model by its id or an alias (routing/aliases.ts): from here on the request is the model's id's.
  const model = catalogueModel(c.get("routing").snapshot, asked.model);
  // Its scheduling class (docs/priority.md): the key's, lowered by x-switchyard-priority; a bad value is a 400.
  const priority = requestPriority(identity, c.req.header(PRIORITY_HEADER), c.get("routing").snapshot.reservations, c.get("routing").reservationRates ?? null, model?.id ?? asked.model);
  c.set("priority", priority);
  if (!model || !keyAllows(identity.allowedModels, model)) {
    // A council asked as a chat model (council/): its consensus answers (docs/council.md).
    if (endpoint === "chat" && !model && asked.model.startsWith(COUNCIL_MODEL_PREFIX)) return councilChat(c, asked);
    throw new ApiError("model_not_found", `The model '${asked.model}' does not exist or you do not have access to it. GET /v1/models lists the models this key may use.`, {
      param: "model",
    });
  }
  // An agent streaming profile (profiles/): one choice, the profile carried to the backplane in the body.
  const profile = opts.profile ?? null;
  c.set("apiModel", model.id);
  const req = profile ? profiledRequest(underModelId(asked, model.id), profile) : underModelId(asked, model.id);
  if (stored) stored.body.model = model.id;
  describeRequest(deps.trace, PATHS[endpoint], model.id, identity.tenantId, req.stream);
  // Pooling routes (embeddings, rerank, score) need a pooling model, audio a transcription model; tokenizing takes either kind.
  const wantKind = costClass(endpoint) === "pool" ? "embedding" : audio ? "transcription" : costClass(endpoint) === "free" && endpoint !== "count_tokens" ? model.kind : "chat";
  if (model.kind !== wantKind) {
    throw new ApiError("invalid_value", `The model '${asked.model}' is ${model.kind === "chat" ? "a chat" : `an ${model.kind}`} model and cannot serve ${c.req.path}.`, {
      param: "model",
    });
  }
  // A response that continues a stored one must be made where that one is stored (responses/ids.ts).
  // The response and embeddings caches (cache/, docs/caching.md): a hit is answered without a node.
  // A profiled stream is re-cut per profile on the backplane: the response cache, which replays the engine's own cut, stays out.
  const cache = profile ? BYPASS : await lookupCache(c, endpoint, req, model);
  const cacheResult = cache.kind === "hit" ? "hit" : cache.headers[CACHE_HEADER] === "miss" ? "miss" : null;
  if (cacheResult) countEvent("switchyard_cache_lookups_total", { cache: endpoint === "embeddings" ? "embeddings" : "response", result: cacheResult });
  if (cache.kind === "hit") {
    const hit = await serveHit(c, endpoint, req, model, bytes, cache);
    hit.headers.set(PRIORITY_HEADER, priority.class);
    return hit;
  }
  // Server-Timing (the gateway's own time): routing, admission, the node's first byte. The Workers
  // clock moves only on I/O, so a phase that did none (admission from the isolate's leases) is 0.
  const routingStarted = Date.now();
  const candidates = stored?.previousResponseId ? [await storedResponseNode(c, stored.previousResponseId, req.model)] : await traced(deps.trace?.start("routing"), routeRequest(c, req.model, req.prefixHash), describeRoute);
  const routingMs = Date.now() - routingStarted;

  // Region price multipliers: the reservation assumes the dearest region among the candidates.
  const multipliers = c.get("routing").snapshot.regionMultipliers ?? {};
  const maxMultiplier = Math.max(1, ...candidates.map((n: NodeEntry) => multipliers[n.regionId] ?? 1));
  /** This request's usage row once it ended (served by `node`, or refused with no node). */
  const rowOf = (node: NodeEntry | null, httpStatus: number, outcome: StreamOutcome) =>
    usageRow({
      requestId: deps.requestId,
      startedAt: deps.startedAt,
      endedAt: Date.now(),
      identity,
      endpoint,
      model,
      node,
      httpStatus,
      streamed: req.stream,
      outcome,
      priceMultiplier: node ? (multipliers[node.regionId] ?? 1) : 1,
      promptTokensEstimate: req.promptTokensEstimate,
      audioMs: req.audioMs,
      streamProfile: profile?.name ?? null,
    });
  const admissionStarted = Date.now();
  const admission = await traced(deps.trace?.start("admission"), admit(
    deps,
    identity,
    c.get("routing").snapshot,
    { max: maxCost(req, bodyBytes, model, maxMultiplier), rateTokens: rateTokens(req, bodyBytes, model), limitField: req.output.limitField },
  )).catch((err: unknown) => {
    // Refused at admission (limited, over budget): recorded with zero tokens, for the audit trail.
    if (err instanceof ApiError) {
      const refused = rowOf(null, err.status, { status: "rejected", usage: null, firstByteAt: null, deliveredChunks: 0, errorCode: err.code });
      deps.waitUntil(enqueue(deps.redis, usageOutboxKey(deps.settings.redisPrefix), refused).catch(() => null));
    }
    throw err;
  });
  const admissionMs = Date.now() - admissionStarted;
  const authAudit = takeAuthAudit(c);
  // Conversation audit (docs/audit.md): with the mode off (the default) nothing else happens for it.
  const auditMode = identity.auditMode ?? "off";
  const auditFull = auditMode === "full";
  // The request body is already in memory as bytes; an audio upload is binary and is not kept.
  const auditRequest: CapturedBody | null = auditFull && !audio ? captureBytes(new Uint8Array(bytes)) : null;
  const conversationOf = (row: UsageRow, response: CapturedBody | null) => (auditMode === "off" ? null : conversationRecord(auditMode, row, auditRequest, response));
  // Aborted when the client goes away (request.signal, where the runtime reports it) or cancels a
  // stream committed early (proxy/keepalive.ts): the backplane then aborts the engine's work.
  const upstreamAbort = new AbortController();
  c.req.raw.signal.addEventListener("abort", () => upstreamAbort.abort(), { once: true });

  // The node's answer, tapped for its usage, which is settled in waitUntil once the body ends.
  // Anything failing before that gives back the reservation and the concurrency slot.
  let forwardStarted = Date.now();
  let upstreamMs: number | null = null;
  // Every admitted request gets its usage row, whatever happens: set once a path below has settled one.
  let metered = false;
  // The edge queue (queue/, docs/edge-queue.md): with every planned node at its in-flight
  // target, the request waits here for its turn (a refusal takes the catch below, which meters it).
  const live = c.get("routing").live;
  const turn = awaitTurn(deps, deps.edgeQueue, { model: model.id, nodes: candidates, live, loadSince, rank: priority.rank, cls: priority.class, tenantId: identity.tenantId, signal: upstreamAbort.signal });
  const answer = turn.then(() => {
    forwardStarted = Date.now();
    return forwardToBackplane(
    {
      path: PATHS[endpoint],
      body: cache.upstreamBody ?? req.upstreamBody,
      contentType: req.upstreamContentType,
      requestId: deps.requestId,
      masterSecret: deps.secrets.nodeSigning,
      connectTimeoutMs: deps.settings.upstreamConnectTimeoutMs,
      clientSignal: upstreamAbort.signal,
      maxAttempts: deps.settings.routing.maxAttempts,
      deadlineMs: deps.settings.routing.deadlineMs,
      onNodeResult: (node, ok) => reportNodeResult(c, node, ok),
      // A request's end on its node also frees its slot in a congested model's edge queue.
      // With class headroom on, the freed slot goes only to the classes the fleet has room for (docs/edge-queue.md).
      track: (node) => endsSlot(deps, deps.edgeQueue, model.id, trackSend(node.id), () => roomForRank(candidates, isolateLive() ?? live, loadSince, deps.settings.queue)),
      trace: deps.trace,
      priorityRank: priority.rank,
      // Anthropic and Responses streams are tapped here (the backplane's report tap speaks the OpenAI dialect).
      // Full audit needs the stream's bytes here, so its environments are always tapped by the gateway.
      // A profiled stream is re-chunked by the backplane and always tapped here (its report tap sees the engine's chunks).
      streamReport: req.stream && dialect === "openai" && deps.settings.streamTap === "node" && !auditFull && !profile && !cache.captureStream ? (req.clientWantsUsage ? "keep-usage" : "strip-usage") : undefined,
      // Responses: the id is made per node (it names the node that will store it).
      bodyFor: stored ? async (node) => JSON.stringify({ ...stored.body, request_id: await newResponseId(deps.secrets.nodeSigning, identity.tenantId, node.id) }) : undefined,
    },
    candidates,
  );
  })
    .then(async (forwarded: Forwarded): Promise<{ forwarded: Forwarded; body: ReadableStream<Uint8Array> | Uint8Array }> => {
      const answeredAt = Date.now();
      upstreamMs = answeredAt - forwardStarted;
      // workers-types leave a body's chunk type as `any`; a fetch() body yields bytes.
      const upstreamBody = forwarded.response.body as ReadableStream<Uint8Array> | null;
      if (!upstreamBody) {
        forwarded.release();
        throw new ApiError("upstream_error", "The GPU node sent an empty response. Retry the request.");
      }
      if (!req.stream) {
        const { bytes, outcome } = await readJson(forwarded.response, answeredAt);
        forwarded.release();
        // Audio answers may be plain text (response_format text, srt, vtt): their words are not usage.
        if (audio && !(forwarded.response.headers.get("content-type") ?? "").includes("json")) outcome.usage = null;
        // Counting or converting tokens is not usage: the row records the request, with no tokens and no cost.
        if (costClass(endpoint) === "free" && bytes) outcome.usage = { promptTokens: 0, completionTokens: 0, cachedPromptTokens: 0 };
        const row = rowOf(forwarded.node, bytes ? forwarded.response.status : 502, outcome);
        recordUsage(deps.trace, outcome);
        if (!bytes) {
          // Metered (what was served is nothing) here; the catch below gives the reservation back and audits.
          metered = true;
          deps.waitUntil(settleRequest(deps, admission, row, null, conversationOf(row, null)));
          throw new ApiError("upstream_error", "The GPU node's answer broke off before it was complete. Retry the request.");
        }
        // An embeddings batch with cached inputs is merged here (and its row adjusted); answers are stored.
        const served = cache.settleJson(bytes, forwarded.response.status, row);
        metered = true;
        deps.waitUntil(settleRequest(deps, admission, row, authAudit, conversationOf(row, auditFull ? captureBytes(served) : null)));
        return { forwarded, body: served };
      }
      // STREAM_TAP=node: a node that taps the stream itself (and reports how it ended) gets its
      // bytes piped natively; otherwise (the default, or an older backplane) it is tapped here.
      const token = deps.settings.streamTap === "node" && dialect === "openai" && !auditFull && !profile && !cache.captureStream ? forwarded.response.headers.get(STREAM_REPORT_HEADER) : null;
      const fetchReport = token !== null && isReportToken(token) ? () => askReport(forwarded.node.url, token) : null;
      const capture = auditFull || cache.captureStream ? new StreamCapture() : undefined;
      // Only the gateway's tap counts a stream's content events as they pass (`delivered`).
      const tapped: { body: ReadableStream<Uint8Array>; done: Promise<StreamOutcome>; delivered?: () => number } = fetchReport
        ? pipeReported(upstreamBody, fetchReport, {
            answeredAt,
            clientGone: upstreamAbort.signal,
            // Least-load routing counts the request as the node's load until its bytes end, not until its report is in.
            onEnded: forwarded.release,
            onMissing: (why) => deps.log("stream_report_missing", { requestId: deps.requestId, node: forwarded.node.id, why }),
          })
        : tapSse(upstreamBody, {
            stripUsage: !req.clientWantsUsage,
            capture,
            ...(dialect === "openai" ? {} : { dialect, broken: failureEvent(BROKEN_MESSAGE, "upstream_error") }),
          });
      deps.trace?.hold(tapped.done.then((outcome) => recordStream(deps.trace, outcome, answeredAt)));
      // A reserving tenant's stream counts toward its reserved throughput as it runs (docs/routing.md).
      if (tapped.delivered && hasReservation(c.get("routing").snapshot, identity.tenantId, model.id)) {
        const w = usageWindow(deps.settings.reservationWindowSeconds);
        deps.waitUntil(streamProgress(deps.redis, deps.settings.redisPrefix, w, { requestId: deps.requestId, tenantId: identity.tenantId, model: model.id, delivered: tapped.delivered, done: tapped.done }));
      }
      metered = true;
      deps.waitUntil(
        tapped.done.then((outcome) => {
          forwarded.release();
          const row = rowOf(forwarded.node, forwarded.response.status, outcome);
          cache.settleStream(outcome, forwarded.response.status, capture);
          return settleRequest(deps, admission, row, authAudit, conversationOf(row, capture && auditFull ? capture.payloads() : null));
        }),
      );
      return { forwarded, body: tapped.body };
    })
    .catch((err: unknown) => {
      deps.waitUntil(admission.finish(null).catch(() => null));
      if (authAudit) deps.waitUntil(enqueue(deps.redis, auditOutboxKey(deps.settings.redisPrefix), authAudit).catch(() => null));
      // Admitted but never answered (no node could take it, the node failed before its first byte, the
      // client left first): recorded with zero tokens, like a refusal, so the audit trail has every request.
      if (!metered) {
        const code = err instanceof ApiError ? err.code : "upstream_error";
        const status = upstreamAbort.signal.aborted ? "cancelled" : "error";
        const row = rowOf(null, err instanceof ApiError ? err.status : 502, { status, usage: null, firstByteAt: null, deliveredChunks: 0, errorCode: code });
        deps.waitUntil(enqueue(deps.redis, usageOutboxKey(deps.settings.redisPrefix), row).catch(() => null));
      }
      if (err instanceof ApiError) for (const [k, v] of Object.entries(admission.headers)) err.headers[k] ??= v;
      throw err;
    });
  // Keeps the request alive until forwarding settles, whatever the client does: a stream cancelled
  // before the node answered must still reach the release above (the runtime ends a request's work
  // once its response is done and nothing is waited for).
  deps.waitUntil(answer.catch(() => undefined));
  holdAnswer(deps.trace, answer);

  const headers = new Headers({
    "content-type": req.stream ? "text/event-stream; charset=utf-8" : "application/json",
    "x-request-id": deps.requestId,
    [PRIORITY_HEADER]: priority.class,
  });
  // A transcription's text, srt or vtt answer keeps the engine's content type.
  const contentTypeOf = (response: Response) => (audio && !req.stream ? response.headers.get("content-type") : null);
  // The Anthropic SDK reads the request id from `request-id`.
  if (anthropic || endpoint === "count_tokens") headers.set("request-id", deps.requestId);
  for (const [k, v] of Object.entries(admission.headers)) headers.set(k, v);
  if (profile) headers.set("x-switchyard-profile", profile.name);
  for (const [k, v] of Object.entries(cache.headers)) headers.set(k, v);
  if (req.stream) {
    headers.set("cache-control", "no-cache");
    headers.set("x-accel-buffering", "no");
    const keepAliveMs = deps.settings.streamKeepAliveMs;
    // A stream waits for its turn before its headers: a refusal is a real 429/503 with Retry-After.
    await turn.catch(() => undefined);
    if (keepAliveMs > 0 && (await settlesWithin(answer, keepAliveMs)) === false) {
      // The node is slow to start (a long prefill): commit to the stream now (proxy/keepalive.ts).
      const body = keepAliveStream({
        // Only streams get here, and a stream's body is always the tap's stream.
        answer: answer.then((a) => (a.body instanceof Uint8Array ? new Response(a.body).body ?? new ReadableStream<Uint8Array>() : a.body)),
        intervalMs: keepAliveMs,
        failure: (err) => (err instanceof ApiError ? failureEvent(err.message, err.code) : failureEvent("The gateway could not reach a GPU node. Retry the request.", "upstream_error")),
        onCancel: () => upstreamAbort.abort(),
      });
      headers.set("server-timing", serverTiming(deps.startedAt, routingMs, admissionMs, null));
      return new Response(body, { status: 200, headers });
    }
  }
  const { forwarded, body } = await answer;
  const upstreamType = contentTypeOf(forwarded.response);
  if (upstreamType) headers.set("content-type", upstreamType);
  headers.set("x-switchyard-node", forwarded.node.id);
  headers.set("x-switchyard-region", forwarded.node.regionId);
  headers.set("server-timing", serverTiming(deps.startedAt, routingMs, admissionMs, upstreamMs));
  return new Response(body, { status: forwarded.response.status, headers });
}

/**
 * The Server-Timing header of a served request: `gateway` is the gateway's own time up to now (the
 * whole time minus the wait for the node's first byte), then its routing and admission and the
 * node's first byte (`upstream`, absent when the stream was committed before the node answered).
 */
function serverTiming(startedAt: number, routingMs: number, admissionMs: number, upstreamMs: number | null): string {
  const total = Date.now() - startedAt;
  const upstream = upstreamMs === null ? "" : `, upstream;desc="node first byte";dur=${upstreamMs}`;
  return `gateway;dur=${Math.max(0, total - (upstreamMs ?? 0))}, routing;dur=${routingMs}, admission;dur=${admissionMs}${upstream}`;
}

/** Validates a JSON body in its endpoint's dialect (proxy/validate.ts, anthropic/, responses/, extras/). */
function validateBody(endpoint: Exclude<Endpoint, AudioEndpoint>, raw: string): ProxyRequest {
  if (endpoint === "messages" || endpoint === "count_tokens") return validateMessages(endpoint, raw);
  if (endpoint === "responses") return validateResponses(raw);
  if (endpoint === "rerank" || endpoint === "score" || endpoint === "tokenize" || endpoint === "detokenize") return validateExtra(endpoint, raw);
  return validateRequest(endpoint, raw);
}

/** True when `promise` settles (either way) within `ms`; false when it is still pending then. */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const waiting = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  const settled = await Promise.race([promise.then(() => true as const, () => true as const), waiting]);
  if (timer !== undefined) clearTimeout(timer);
  return settled;
}

/**
 * Plans the nodes to try (routing/pick.ts) for this caller: its location, its environment's pinned
 * region, strategy and allowed region overrides, the model's strategy, and the nodes' live load and
 * circuits. A half-open circuit's node is kept (first) only by the one request that claims its
 * trial. No capacity is a 503 that says why.
 */
export async function routeRequest(c: Context<AppEnv>, model: string, prefixHash: number | null): Promise<NodeEntry[]> {
  const identity = c.get("identity");
  const routing = c.get("routing");
  const settings = c.get("deps").settings;
  const requested = c.req.header(REGION_HEADER)?.trim() || null;
  if (requested !== null && requested !== identity.pinnedRegion) {
    const allowed = identity.pinnedRegion === null && (identity.regionOverrides ?? []).some((r) => r === requested || r === "*");
    if (!allowed) {
      throw new ApiError("permission_denied", `This key's environment may not choose its region with ${REGION_HEADER}${identity.pinnedRegion ? ` (it is pinned to '${identity.pinnedRegion}')` : ""}; an admin can allow regions with region_overrides.`);
    }
  }
  const now = Date.now();
  const input: RouteInput = {
    snapshot: routing.snapshot,
    live: routing.live,
    circuits: routing.circuits,
    model,
    tenantId: identity.tenantId,
    pinnedRegion: identity.pinnedRegion,
    requestedRegion: requested,
    location: callerLocation(c.req.raw, settings.routing.trustLocationHeader),
    strategy: identity.routingStrategy ?? routing.snapshot.models[model]?.routingStrategy ?? "least-load",
    prefixHash,
    weights: settings.routing.weights,
    affinitySlack: settings.routing.affinitySlack,
    sentSince,
    reservationRates: routing.reservationRates,
    // Liveness is judged as of when the live state was read: while Redis is unreachable the
    // isolate routes on its last view, and its nodes must not all look stale (hot-state.ts).
    now: Math.min(now, routing.liveAt),
  };
  const plan: RoutePlan = planRoute(input);
  // A LoRA adapter no eligible node has loaded: loaded on a node serving its base (routing/adapters.ts).
  if (plan.nodes.length === 0 && plan.emptyReason !== "shed") {
    const loaded = await routeToLoadedAdapter(c, input);
    if (loaded) return loaded;
  }
  let nodes = plan.nodes;
  const trial = nodes.find((n) => plan.halfOpen.has(n.id));
  if (trial) {
    // One round trip, only while a circuit is half open: exactly one request gets to try the node.
    const won = await claimTrial(c.get("deps").redis, settings.redisPrefix, trial.id, settings.routing.breakerCooldownMs).catch(() => false);
    const others = nodes.filter((n) => !plan.halfOpen.has(n.id));
    nodes = won ? [trial, ...others] : others;
  }
  if (nodes.length === 0) {
    const message =
      plan.emptyReason === "pinned_region"
        ? `No healthy GPU node in region '${identity.pinnedRegion}' is serving '${model}' right now, and this environment is pinned to that region. Retry in a few seconds.`
        : plan.emptyReason === "shed"
          ? `Every GPU node serving '${model}' is busy with reserved capacity right now. Retry in a few seconds.`
          : plan.emptyReason === "not_served"
            ? `No GPU node serves '${model}': it is in the catalogue, but no registered node lists it. Operators: start a node with this model, or use another model (GET /v1/models).`
            : `No healthy GPU node is serving '${model}' right now (its nodes are down, draining or unreachable). Retry in a few seconds.`;
    // Waiting cannot help a model no node lists, so that 503 carries no Retry-After.
    throw new ApiError("no_capacity", message, { headers: plan.emptyReason === "not_served" ? {} : { "retry-after": "5" } });
  }
  return nodes;
}

/** Feeds the node's circuit breaker (in waitUntil): failures count up to opening it; a success after any failure closes it. */
export function reportNodeResult(c: Context<AppEnv>, node: NodeEntry, ok: boolean): void {
  const redis = c.get("deps").redis;
  const settings = c.get("deps").settings;
  const routing = c.get("routing");
  const prefix = settings.redisPrefix;
  if (ok) {
    if (!routing.circuits[node.id]) return;
    if ((routing.circuits[node.id]?.openUntil ?? 0) > 0) countEvent("switchyard_circuit_changes_total", { node: node.id, state: "closed" });
    rememberCircuit(node.id, null);
    c.executionCtx.waitUntil(recordSuccess(redis, prefix, node.id).catch(() => null));
    return;
  }
  const breaker = { failures: settings.routing.breakerFailures, cooldownMs: settings.routing.breakerCooldownMs };
  c.executionCtx.waitUntil(
    recordFailure(redis, prefix, node.id, breaker)
      .then((state) => {
        const before = routing.circuits[node.id]?.openUntil ?? 0;
        rememberCircuit(node.id, state);
        if (state.openUntil > Date.now()) c.get("deps").log("circuit_open", { nodeId: node.id, failures: state.failures, until: new Date(state.openUntil).toISOString() });
        // A new opening (not the same one seen again by another request of this isolate).
        if (state.openUntil > Date.now() && state.openUntil !== before) countEvent("switchyard_circuit_changes_total", { node: node.id, state: "open" });
      })
      .catch(() => null),
  );
}
