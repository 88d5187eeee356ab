import type { Context } from "hono";
import type { AppEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { usageOutboxKey } from "../metering/flush.ts";
import { ensureUsageDelivered } from "../metering/deliver.ts";
import { usageRow } from "../metering/record.ts";
import { enqueue } from "../platform/outbox.ts";
import { auditOutboxKey } from "../audit/outbox.ts";
import { takeAuthAudit } from "../auth/middleware.ts";
import { flushCounters } from "../platform/metrics.ts";
import { forwardToBackplane, type Forwarded } from "../proxy/forward.ts";
import { admit, maxCost, rateTokens } from "../limits/admission.ts";
import { tapJson } from "../proxy/json-tap.ts";
import { tapSse } from "../proxy/sse-tap.ts";
import { validateRequest, type Endpoint } from "../proxy/validate.ts";
import { claimTrial, recordFailure, recordSuccess } from "../routing/breaker.ts";
import { callerLocation, REGION_HEADER } from "../routing/geo.ts";
import { planRoute, type RoutePlan } from "../routing/pick.ts";
import { sentSince, trackSend } from "../routing/sent.ts";
import { rememberCircuit } from "../platform/hot-state.ts";
import type { NodeEntry } from "../routing/snapshot.ts";

const PATHS: Record<Endpoint, string> = {
  chat: "/v1/chat/completions",
  completions: "/v1/completions",
  embeddings: "/v1/embeddings",
};
const SCOPE: Record<Endpoint, string> = { chat: "chat", completions: "chat", embeddings: "embeddings" };
const MAX_BODY_BYTES = 10 * 1024 * 1024;

/**
 * Handles one OpenAI inference request: validate, check the key may use the model, forward signed
 * to a backplane, pass the response through while learning its usage, and record that usage in
 * `waitUntil`. Nothing here queries Postgres.
 */
export function proxyHandler(endpoint: Endpoint) {
  return async (c: Context<AppEnv>): Promise<Response> => {
    const deps = c.get("deps");
    const identity = c.get("identity");
    if (!identity.scopes.includes(SCOPE[endpoint])) {
      throw new ApiError("permission_denied", `This API key lacks the '${SCOPE[endpoint]}' scope needed for ${PATHS[endpoint]}.`);
    }
    const declared = Number(c.req.header("content-length") ?? "0");
    if (declared > MAX_BODY_BYTES) throw new ApiError("request_too_large", "Request bodies are limited to 10 MB.");
    const raw = await c.req.text();
    const req = validateRequest(endpoint, raw);

    const model = c.get("routing").snapshot.models[req.model];
    const allowed = identity.allowedModels === null || identity.allowedModels.includes(req.model);
    if (!model || !allowed) {
      throw new ApiError("model_not_found", `The model '${req.model}' does not exist or you do not have access to it. GET /v1/models lists the models this key may use.`, {
        param: "model",
      });
    }
    const wantKind = endpoint === "embeddings" ? "embedding" : "chat";
    if (model.kind !== wantKind) {
      throw new ApiError("invalid_value", `The model '${req.model}' is an ${model.kind} model and cannot serve ${PATHS[endpoint]}.`, {
        param: "model",
      });
    }
    const candidates = await routeRequest(c, req.model, req.prefixHash);

    const bodyBytes = new TextEncoder().encode(raw).length;
    // Region price multipliers: the reservation assumes the dearest region among the candidates.
    const multipliers = c.get("routing").snapshot.regionMultipliers ?? {};
    const maxMultiplier = Math.max(1, ...candidates.map((n: NodeEntry) => multipliers[n.regionId] ?? 1));
    const admission = await admit(
      deps,
      identity,
      c.get("routing").snapshot,
      { max: maxCost(req, bodyBytes, model, maxMultiplier), rateTokens: rateTokens(req, bodyBytes, model), limitField: req.output.limitField },
    ).catch((err: unknown) => {
      // Refused at admission (limited, over budget): recorded with zero tokens, for the audit trail.
      if (err instanceof ApiError) {
        const refused = usageRow({
          requestId: deps.requestId,
          startedAt: deps.startedAt,
          endedAt: Date.now(),
          identity,
          endpoint,
          model,
          node: null,
          httpStatus: err.status,
          streamed: req.stream,
          outcome: { status: "rejected", usage: null, firstByteAt: null, deliveredChunks: 0, errorCode: err.code },
        });
        deps.waitUntil(enqueue(deps.redis, usageOutboxKey(deps.settings.redisPrefix), refused).catch(() => null));
      }
      throw err;
    });
    c.executionCtx.waitUntil(admission.pending);
    let forwarded: Forwarded;
    try {
      forwarded = await forwardToBackplane(
        {
          path: PATHS[endpoint],
          body: req.upstreamBody,
          requestId: deps.requestId,
          masterSecret: deps.secrets.nodeSigning,
          connectTimeoutMs: deps.settings.upstreamConnectTimeoutMs,
          clientSignal: c.req.raw.signal,
          maxAttempts: deps.settings.routing.maxAttempts,
          deadlineMs: deps.settings.routing.deadlineMs,
          onNodeResult: (node, ok) => reportNodeResult(c, node, ok),
          track: (node) => trackSend(node.id),
        },
        candidates,
      );
    } catch (err) {
      // Nothing ran: give back the reservation and the concurrency slot.
      c.executionCtx.waitUntil(admission.finish(null).catch(() => null));
      if (err instanceof ApiError) for (const [k, v] of Object.entries(admission.headers)) err.headers[k] ??= v;
      throw err;
    }
    const upstreamBody = forwarded.response.body;
    if (!upstreamBody) {
      forwarded.release();
      c.executionCtx.waitUntil(admission.finish(null).catch(() => null));
      throw new ApiError("upstream_error", "The GPU node sent an empty response. Retry the request.");
    }
    const tapped = req.stream ? tapSse(upstreamBody, { stripUsage: !req.clientWantsUsage }) : tapJson(upstreamBody);

    const { requestId, startedAt, log, redis } = deps;
    const authAudit = takeAuthAudit(c);
    const prefix = deps.settings.redisPrefix;
    deps.waitUntil(
      tapped.done.then(async (outcome) => {
        forwarded.release();
        const row = usageRow({
          requestId,
          startedAt,
          endedAt: Date.now(),
          identity,
          endpoint,
          model,
          node: forwarded.node,
          httpStatus: forwarded.response.status,
          streamed: req.stream,
          outcome,
          priceMultiplier: multipliers[forwarded.node.regionId] ?? 1,
          promptTokensEstimate: req.promptTokensEstimate,
        });
        log("request_done", {
          requestId,
          tenantId: identity.tenantId,
          model: model.id,
          node: forwarded.node.id,
          status: row.status,
          promptTokens: row.promptTokens,
          completionTokens: row.completionTokens,
          ttftMs: row.ttftMs,
          latencyMs: row.latencyMs,
        });
        const used = (row.promptTokens ?? 0) + (row.completionTokens ?? 0);
        // One round trip for everything the request's end writes: the budget settlement (a request
        // that produced nothing gives its whole reservation back), the concurrency release, the usage
        // event (the durable buffer the scheduled job writes to Postgres, metering/flush.ts) and the
        // authentication's audit event. If Redis fails it, the usage event still reaches Postgres
        // (metering/deliver.ts); the budget then keeps the whole reservation and the slot its lease
        // expiry (docs/limits.md).
        const batch = redis.pipeline();
        await admission.finish(used > 0 ? { tokens: used, spend: row.costMicros ?? 0, requests: 1 } : null, batch);
        batch.lpush(usageOutboxKey(prefix), JSON.stringify(row));
        if (authAudit) batch.lpush(auditOutboxKey(prefix), JSON.stringify(authAudit));
        try {
          await batch.exec();
        } catch (err) {
          log("request_end_writes_failed", { requestId, error: String(err) });
          await ensureUsageDelivered(deps, row);
          return;
        }
        await flushCounters(redis, prefix).catch(() => null);
      }),
    );

    const headers = new Headers({
      "content-type": req.stream ? "text/event-stream; charset=utf-8" : "application/json",
      "x-request-id": requestId,
      "x-switchyard-node": forwarded.node.id,
      "x-switchyard-region": forwarded.node.regionId,
    });
    for (const [k, v] of Object.entries(admission.headers)) headers.set(k, v);
    if (req.stream) {
      headers.set("cache-control", "no-cache");
      headers.set("x-accel-buffering", "no");
    }
    return new Response(tapped.body, { status: forwarded.response.status, headers });
  };
}

/**
 * Plans the nodes to try (routing/pick.ts) for this caller: its location, its environment's pinned
 * region, strategy and allowed region overrides, the model's strategy, and the nodes' live load and
 * circuits. A half-open circuit's node is kept (first) only by the one request that claims its
 * trial. No capacity is a 503 that says why.
 */
async function routeRequest(c: Context<AppEnv>, model: string, prefixHash: number | null): Promise<NodeEntry[]> {
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
  const plan: RoutePlan = planRoute({
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
    // Liveness is judged as of when the live state was read: while Redis is unreachable the
    // isolate routes on its last view, and its nodes must not all look stale (hot-state.ts).
    now: Math.min(now, routing.liveAt),
  });
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
function reportNodeResult(c: Context<AppEnv>, node: NodeEntry, ok: boolean): void {
  const redis = c.get("deps").redis;
  const settings = c.get("deps").settings;
  const routing = c.get("routing");
  const prefix = settings.redisPrefix;
  if (ok) {
    if (!routing.circuits[node.id]) return;
    rememberCircuit(node.id, null);
    c.executionCtx.waitUntil(recordSuccess(redis, prefix, node.id).catch(() => null));
    return;
  }
  const breaker = { failures: settings.routing.breakerFailures, cooldownMs: settings.routing.breakerCooldownMs };
  c.executionCtx.waitUntil(
    recordFailure(redis, prefix, node.id, breaker)
      .then((state) => {
        rememberCircuit(node.id, state);
        if (state.openUntil > Date.now()) c.get("deps").log("circuit_open", { nodeId: node.id, failures: state.failures, until: new Date(state.openUntil).toISOString() });
      })
      .catch(() => null),
  );
}
