import type { Context } from "hono";
import { storedResponseCall } from "../../../schema/contracts/responses.ts";
import type { AppEnv } from "../env.ts";
import { ApiError, type ErrorCode } from "../errors.ts";
import { admit } from "../limits/admission.ts";
import { forwardToBackplane } from "../proxy/forward.ts";
import { isEligible } from "../routing/pick.ts";
import { isStale } from "../nodes/live.ts";
import type { NodeEntry } from "../routing/snapshot.ts";
import { responseNode } from "./ids.ts";

/** The Responses API's in-band error event (its fields at the top level; no `[DONE]` in this dialect). */
export function responsesSseError(message: string, code: ErrorCode): string {
  return `event: error\ndata: ${JSON.stringify({ type: "error", code, message, param: null })}\n\n`;
}

function notFound(id: string): ApiError {
  // The same answer for an unknown id, a forged one and another organisation's: ids cannot be probed.
  return new ApiError("not_found", `No response with id '${id}' was found. Stored responses can be used only with keys of the organisation that created them.`, { param: "response_id" });
}

function gone(id: string, nodeId: string): ApiError {
  return new ApiError(
    "response_gone",
    `The response '${id}' is stored on GPU node '${nodeId}', which is no longer serving. A stored response lives in the memory of the engine that made it; start a new response (without previous_response_id) instead.`,
    { param: "response_id" },
  );
}

/**
 * The node holding stored response `id` for the caller's organisation, able to take new requests for
 * `model` (a continuation runs a generation there); 404 for an id that is not the caller's, and 410
 * when its node is gone, draining or no longer serves the model.
 */
export async function storedResponseNode(c: Context<AppEnv>, id: string, model: string): Promise<NodeEntry> {
  const deps = c.get("deps");
  const nodeId = await responseNode(deps.secrets.nodeSigning, c.get("identity").tenantId, id);
  if (nodeId === null) throw notFound(id);
  const routing = c.get("routing");
  const node = routing.snapshot.nodes.find((n) => n.id === nodeId);
  if (!node || !isEligible(node, routing.live[nodeId], model, Math.min(Date.now(), routing.liveAt))) throw gone(id, nodeId);
  return node;
}

/** The node holding stored response `id`, reachable for calls that run no generation (a draining node still answers them). */
async function holderOf(c: Context<AppEnv>, id: string): Promise<NodeEntry> {
  const deps = c.get("deps");
  const nodeId = await responseNode(deps.secrets.nodeSigning, c.get("identity").tenantId, id);
  if (nodeId === null) throw notFound(id);
  const routing = c.get("routing");
  const node = routing.snapshot.nodes.find((n) => n.id === nodeId);
  const live = routing.live[nodeId];
  const reachable = node !== undefined && node.status !== "disabled" && (live ? !isStale(live, Math.min(Date.now(), routing.liveAt)) : !node.heartbeats);
  if (!node || !reachable) throw gone(id, nodeId);
  return node;
}

/**
 * `GET /v1/responses/{id}`, `DELETE /v1/responses/{id}`, `POST /v1/responses/{id}/cancel` and
 * `GET /v1/responses/{id}/input_items`: passed to the node that stores the response (with the query
 * string: `stream`, `starting_after`, `include[]`, paging), with the engine's answer as it is. They
 * run no generation: admitted against requests per minute and in-flight caps at no token cost, and
 * not metered as usage.
 */
export async function storedResponseHandler(c: Context<AppEnv>): Promise<Response> {
  const deps = c.get("deps");
  const identity = c.get("identity");
  if (!identity.scopes.includes("chat")) throw new ApiError("permission_denied", "This API key lacks the 'chat' scope needed for /v1/responses.");
  const call = storedResponseCall(c.req.path);
  // An id no node could hold (characters a gateway id never has) is unknown like any other.
  if (!call) throw notFound(c.req.param("id") ?? "");
  const node = await holderOf(c, call.id);
  const admission = await admit(deps, identity, c.get("routing").snapshot, { max: { tokens: 0, spend: 0, requests: 1 }, rateTokens: 0, limitField: "input" });
  try {
    const query = new URL(c.req.url).search;
    const forwarded = await forwardToBackplane(
      {
        method: c.req.method === "GET" ? "GET" : c.req.method === "DELETE" ? "DELETE" : "POST",
        path: `${c.req.path}${query}`,
        body: "",
        requestId: deps.requestId,
        masterSecret: deps.secrets.nodeSigning,
        connectTimeoutMs: deps.settings.upstreamConnectTimeoutMs,
        clientSignal: c.req.raw.signal,
        maxAttempts: 1,
        deadlineMs: deps.settings.routing.deadlineMs,
        // A 400 (cancelling a finished response) or 404 from the engine is the answer, not a node failure.
        relayClientErrors: true,
        trace: deps.trace ?? null,
      },
      [node],
    );
    forwarded.release();
    const status = forwarded.response.status;
    if (status === 404) {
      // The engine does not hold it (vLLM without its response store, or restarted since).
      await forwarded.response.body?.cancel();
      throw notFound(call.id);
    }
    if (status === 405) {
      await forwarded.response.body?.cancel();
      throw new ApiError("method_not_allowed", `The engine that stores '${call.id}' does not support ${c.req.method} ${call.op === "input_items" ? "on input_items" : "on stored responses"} (vLLM has no delete or input_items route).`);
    }
    const headers = new Headers({ "x-request-id": deps.requestId, "x-switchyard-node": node.id });
    const type = forwarded.response.headers.get("content-type");
    if (type) headers.set("content-type", type);
    for (const [k, v] of Object.entries(admission.headers)) headers.set(k, v);
    return new Response(forwarded.response.body, { status, headers });
  } finally {
    deps.waitUntil(admission.finish(null).catch(() => null));
  }
}
