/**
 * The caches on the inference path (docs/caching.md), called by serveProxy (routes/proxy.ts), so
 * every route built on it (Ollama's, streaming profiles') has them too. `lookupCache` decides, with
 * no I/O, whether a request is cacheable and, if it is, reads its entries in one round trip; a hit
 * is answered by `serveHit` (admission, metering, no node). A miss carries what the forwarding
 * needs: the upstream body (an embeddings batch without its cached inputs), whether to capture the
 * stream, and the hooks that merge, meter and store the node's answer (writes in waitUntil).
 */
import type { Context } from "hono";
import type { AppEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { takeAuthAudit } from "../auth/middleware.ts";
import { admit } from "../limits/admission.ts";
import { usageOutboxKey } from "../metering/flush.ts";
import { settleRequest } from "../metering/request-end.ts";
import { costMicros, usageRow, type UsageRow } from "../metering/record.ts";
import { enqueue } from "../platform/outbox.ts";
import type { RequestDeps } from "../platform/deps.ts";
import type { Endpoint, ProxyRequest } from "../proxy/validate.ts";
import type { StreamOutcome } from "../proxy/usage.ts";
import type { ModelEntry } from "../routing/snapshot.ts";
import { captureBytes, conversationRecord, type StreamCapture } from "../conversations/capture.ts";
import { answerFromJson, answerFromStream, asCachedAnswer, eventStream, replayEvents, replayJson, type AnswerEndpoint, type CachedAnswer } from "./answers.ts";
import { asCachedEmbedding, cachedAnswer, clientVector, mergedAnswer, missingInputsBody, readUpstreamAnswer, splitTokens, storedVector, type CachedEmbedding } from "./embeddings.ts";
import { cacheDirectives, embeddingInputs, embeddingKeys, responseKey, responseUncacheable } from "./policy.ts";
import { readEntries, storeEntries, type CacheWrite } from "./store.ts";

/** The response header that says where an answer came from. */
export const CACHE_HEADER = "x-switchyard-cache";
/** On embeddings: how many of the batch's inputs the cache answered, of how many (`2/5`). */
export const CACHE_INPUTS_HEADER = "x-switchyard-cache-inputs";

/** The routes whose answers say `hit`, `miss` or `bypass` in CACHE_HEADER. */
const ANSWERED: ReadonlySet<Endpoint> = new Set(["chat", "completions", "embeddings", "messages", "responses"]);

/** A request the caches answered: what it returns and its tokens, for metering. */
export interface CacheHit {
  kind: "hit";
  body: Uint8Array | ReadableStream<Uint8Array>;
  /** What the conversation audit records as the response. */
  auditText: () => string;
  promptTokens: number;
  completionTokens: number;
  headers: Record<string, string>;
}

/** A request the node answers, with what the caches do around it. */
export interface CacheMiss {
  kind: "miss";
  headers: Record<string, string>;
  /** The body to send upstream instead of the client's (embeddings: only the inputs not cached). */
  upstreamBody?: string;
  /** The stream must be read here (not piped natively) so its answer can be stored. */
  captureStream: boolean;
  /**
   * A non-streamed answer: the bytes for the client (merged with the cached inputs) and the row
   * adjusted; stores in waitUntil. Throws a 502 when a partly cached batch's answer cannot be merged.
   */
  settleJson(bytes: Uint8Array, httpStatus: number, row: UsageRow): Uint8Array;
  /** A stream that ended: stores its answer (waitUntil) when it ended well. */
  settleStream(outcome: StreamOutcome, httpStatus: number, capture: StreamCapture | undefined): void;
}

const NOTHING: Omit<CacheMiss, "headers"> = { kind: "miss", captureStream: false, settleJson: (bytes) => bytes, settleStream: () => undefined };
/** Neither read nor stored: `x-switchyard-cache: bypass` (also what a profiled stream gets, profiles/). */
export const BYPASS: CacheMiss = { ...NOTHING, headers: { [CACHE_HEADER]: "bypass" } };
const SILENT: CacheMiss = { ...NOTHING, headers: {} };

type Json = Record<string, unknown>;

/** What a hit costs: the catalogue's cache_hit_price_factor × what the GPU answer would have cost (region multiplier 1). */
export function hitCostMicros(model: ModelEntry, promptTokens: number, completionTokens: number): number {
  const factor = model.cacheHitPriceFactor ?? 0;
  return factor === 0 ? 0 : Math.round(factor * costMicros(model, promptTokens, completionTokens, 0));
}

/** Hands a store to waitUntil; a failure is logged and dropped. */
function storeLater(deps: RequestDeps, tenantId: string, writes: CacheWrite[]): void {
  if (writes.length === 0) return;
  deps.waitUntil(
    storeEntries(deps.redis, deps.settings.redisPrefix, tenantId, writes, deps.settings.cache.tenantMaxBytes).catch((err: unknown) => {
      deps.log("cache_store_failed", { requestId: deps.requestId, error: String(err) });
    }),
  );
}

/** Reads entries; a Redis failure or a late answer is a miss for every entry (logged). */
async function readOrMiss(deps: RequestDeps, keys: string[]): Promise<{ values: unknown[]; readFailed: boolean }> {
  try {
    return { values: await readEntries(deps.redis, keys, deps.settings.cache.readTimeoutMs), readFailed: false };
  } catch (err) {
    deps.log("cache_read_failed", { requestId: deps.requestId, error: String(err) });
    return { values: keys.map(() => null), readFailed: true };
  }
}

/**
 * Decides what the caches do for this request and, when it is cacheable and the client allows,
 * reads its entries (one round trip). Not cacheable (another route, a non-deterministic request,
 * the environment's cache off, `Cache-Control: no-store`) costs no I/O at all.
 */
export async function lookupCache(c: Context<AppEnv>, endpoint: Endpoint, req: ProxyRequest, model: ModelEntry): Promise<CacheHit | CacheMiss> {
  if (!ANSWERED.has(endpoint)) return SILENT;
  if (endpoint !== "chat" && endpoint !== "completions" && endpoint !== "embeddings") return BYPASS;
  const body = req.json;
  const identity = c.get("identity");
  if (!body || identity.cacheEnabled === false) return BYPASS;
  const directives = cacheDirectives(c.req.header("cache-control"));
  if (!directives.store) return BYPASS;
  const deps = c.get("deps");
  if (endpoint === "embeddings") return lookupEmbeddings(deps, identity.tenantId, body, model, directives.read);
  if (responseUncacheable(body) !== null || deps.settings.cache.responseTtlMs === 0) return BYPASS;
  return lookupAnswer(deps, identity.tenantId, endpoint, req, body, model, directives.read);
}

async function lookupAnswer(deps: RequestDeps, tenantId: string, endpoint: AnswerEndpoint, req: ProxyRequest, body: Json, model: ModelEntry, read: boolean): Promise<CacheHit | CacheMiss> {
  const key = await responseKey(deps.settings.redisPrefix, tenantId, endpoint, model.id, body);
  let readFailed = false;
  if (read) {
    const got = await readOrMiss(deps, [key]);
    readFailed = got.readFailed;
    const entry = asCachedAnswer(got.values[0], endpoint);
    if (entry) return answerHit(deps, entry, req);
  }
  const store = (entry: CachedAnswer | null) => {
    if (!entry || readFailed) return;
    storeLater(deps, tenantId, [{ key, value: JSON.stringify(entry), ttlMs: deps.settings.cache.responseTtlMs }]);
  };
  return {
    kind: "miss",
    headers: { [CACHE_HEADER]: "miss" },
    captureStream: req.stream,
    settleJson(bytes, httpStatus) {
      if (httpStatus === 200) store(answerFromJson(endpoint, bytes));
      return bytes;
    },
    settleStream(outcome, httpStatus, capture) {
      if (outcome.status !== "ok" || httpStatus !== 200 || !capture) return;
      const payloads = capture.payloads();
      if (!payloads.truncated) store(answerFromStream(endpoint, payloads.text));
    },
  };
}

function answerHit(deps: RequestDeps, entry: CachedAnswer, req: ProxyRequest): CacheHit {
  const base = { kind: "hit" as const, promptTokens: entry.promptTokens, completionTokens: entry.completionTokens };
  if (!req.stream) {
    const bytes = replayJson(entry, deps.requestId);
    return { ...base, body: bytes, auditText: () => captureBytes(bytes).text, headers: { "content-type": "application/json", [CACHE_HEADER]: "hit" } };
  }
  const events = replayEvents(entry, deps.requestId, req.clientWantsUsage);
  return {
    ...base,
    body: eventStream(events),
    auditText: () => events.map((e) => e.slice(6, -2)).join("\n"),
    headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", "x-accel-buffering": "no", [CACHE_HEADER]: "hit" },
  };
}

async function lookupEmbeddings(deps: RequestDeps, tenantId: string, body: Json, model: ModelEntry, read: boolean): Promise<CacheHit | CacheMiss> {
  const ttlMs = deps.settings.cache.embeddingTtlMs;
  if (ttlMs === 0) return BYPASS;
  const inputs = embeddingInputs(body.input);
  const keys = await embeddingKeys(deps.settings.redisPrefix, tenantId, model.id, body, inputs);
  const { values, readFailed } = read ? await readOrMiss(deps, keys) : { values: keys.map(() => null), readFailed: false };
  const hits: (CachedEmbedding | null)[] = values.map(asCachedEmbedding);
  const missing: number[] = [];
  hits.forEach((h, i) => {
    if (h === null) missing.push(i);
  });
  const cachedCount = inputs.length - missing.length;
  const base64 = body.encoding_format === "base64";
  const inputsHeader = { [CACHE_INPUTS_HEADER]: `${cachedCount}/${inputs.length}` };
  if (missing.length === 0) {
    const vectors = hits.map((h) => (h ? clientVector(h.e, base64) : null));
    const bytes = cachedAnswer(deps.requestId, model.id, vectors);
    const tokens = hits.reduce((s, h) => s + (h?.t ?? 0), 0);
    return { kind: "hit", body: bytes, auditText: () => captureBytes(bytes).text, promptTokens: tokens, completionTokens: 0, headers: { "content-type": "application/json", [CACHE_HEADER]: "hit", ...inputsHeader } };
  }
  const cachedTokens = hits.reduce((s, h) => s + (h?.t ?? 0), 0);
  const sentInputs = missing.map((i) => inputs[i]);
  return {
    kind: "miss",
    headers: { [CACHE_HEADER]: "miss", ...inputsHeader },
    upstreamBody: cachedCount > 0 ? missingInputsBody(body, model.id, sentInputs) : undefined,
    captureStream: false,
    settleJson(bytes, httpStatus, row) {
      if (httpStatus !== 200) return bytes;
      const answer = readUpstreamAnswer(bytes, sentInputs.length);
      if (!answer) {
        // The node's answer covers only the inputs sent: passing it on unmerged would be a wrong answer.
        if (cachedCount > 0) throw new ApiError("upstream_error", "The GPU node's embeddings answer could not be read. Retry the request.");
        return bytes;
      }
      if (!readFailed) {
        const tokens = splitTokens(answer.promptTokens, sentInputs);
        const writes: CacheWrite[] = [];
        missing.forEach((at, j) => {
          const e = storedVector(answer.vectors[j]);
          if (e !== null) writes.push({ key: keys[at] ?? "", value: JSON.stringify({ t: tokens[j] ?? 0, e }), ttlMs });
        });
        storeLater(deps, tenantId, writes);
      }
      if (cachedCount === 0) return bytes;
      // The cached inputs cost no GPU: the row keeps the tokens the node processed (so reconciliation
      // with the engine's counters stays exact) and adds the cached inputs' hit price.
      row.costMicros = (row.costMicros ?? 0) + hitCostMicros(model, cachedTokens, 0);
      const vectors: unknown[] = hits.map((h) => (h ? clientVector(h.e, base64) : null));
      missing.forEach((at, j) => (vectors[at] = answer.vectors[j]));
      return mergedAnswer(answer.body, vectors);
    },
    settleStream: () => undefined,
  };
}

/**
 * Answers a hit: admitted like any request (rate limits count it; budgets reserve its exact cost:
 * its tokens and the hit price), never sent to a node, metered as a usage row with `cache_hit`,
 * the cached answer's tokens (its prompt as cached prompt tokens) and the hit price.
 */
export async function serveHit(c: Context<AppEnv>, endpoint: Endpoint, req: ProxyRequest, model: ModelEntry, requestBytes: ArrayBuffer, hit: CacheHit): Promise<Response> {
  const deps = c.get("deps");
  const identity = c.get("identity");
  const tokens = hit.promptTokens + hit.completionTokens;
  const cost = hitCostMicros(model, hit.promptTokens, hit.completionTokens);
  const rowOf = (httpStatus: number, outcome: StreamOutcome): UsageRow => {
    const row = usageRow({ requestId: deps.requestId, startedAt: deps.startedAt, endedAt: Date.now(), identity, endpoint, model, node: null, httpStatus, streamed: req.stream, outcome });
    return outcome.status === "rejected" ? row : { ...row, costMicros: cost, cacheHit: true };
  };
  const admission = await admit(deps, identity, c.get("routing").snapshot, { max: { tokens, spend: cost, requests: 1 }, rateTokens: 0, limitField: req.output.limitField }).catch((err: unknown) => {
    if (err instanceof ApiError) {
      const refused = rowOf(err.status, { status: "rejected", usage: null, firstByteAt: null, deliveredChunks: 0, errorCode: err.code });
      deps.waitUntil(enqueue(deps.redis, usageOutboxKey(deps.settings.redisPrefix), refused).catch(() => null));
    }
    throw err;
  });
  const now = Date.now();
  const row = rowOf(200, { status: "ok", usage: { promptTokens: hit.promptTokens, completionTokens: hit.completionTokens, cachedPromptTokens: hit.promptTokens }, firstByteAt: now, deliveredChunks: 0, errorCode: null });
  const auditMode = identity.auditMode ?? "off";
  const conversation =
    auditMode === "off"
      ? null
      : conversationRecord(auditMode, row, auditMode === "full" ? captureBytes(new Uint8Array(requestBytes)) : null, auditMode === "full" ? { text: hit.auditText(), truncated: false } : null);
  deps.waitUntil(settleRequest(deps, admission, row, takeAuthAudit(c), conversation));
  const headers = new Headers({ "x-request-id": deps.requestId, ...admission.headers, ...hit.headers });
  if (endpoint === "messages" || endpoint === "count_tokens") headers.set("request-id", deps.requestId);
  return new Response(hit.body, { status: 200, headers });
}
