import type { Context } from "hono";
import type { Redis } from "@upstash/redis/cloudflare";
import { NODE_HEADER, NONCE_HEADER, nonceTtlSeconds, SIGNATURE_HEADER, TIMESTAMP_HEADER, verifyRequest, type VerifyOutcome } from "../../../schema/contracts/signing.ts";
import type { AppEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { loadRoutingView, type RoutingView } from "../platform/hot-state.ts";
import type { NodeEntry } from "../routing/snapshot.ts";
import { nodeSigningKey } from "./keys.ts";

const NODE_ID = /^[a-z0-9][a-z0-9._-]{0,62}$/;
/** Deadline of the nonce check in Redis; heartbeats come every few seconds and must not hang on it. */
const NONCE_CHECK_TIMEOUT_MS = 500;

/**
 * Claims a node request's nonce in Redis (`SET <prefix>node-nonce:<node>:<nonce> 1 NX EX <ttl>`),
 * shared by every isolate: `replayed` when another request already used it within the window.
 * Failure mode, decided here: when Redis errs or misses the deadline the request is accepted
 * (`unchecked`, logged). Refusing would mark every node stale during a Redis outage and take the
 * whole fleet out of routing; what a replay can do meanwhile is bounded by the 60 s window and is
 * limited to re-asserting a status (or spot notice) the node itself sent moments before.
 */
export async function claimNodeNonce(redis: Redis, prefix: string, nodeId: string, nonce: string, ttlSeconds: number): Promise<"fresh" | "replayed" | "unchecked"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<"unchecked">((resolve) => {
    timer = setTimeout(() => resolve("unchecked"), NONCE_CHECK_TIMEOUT_MS);
  });
  const claim = redis.set(`${prefix}node-nonce:${nodeId}:${nonce}`, 1, { nx: true, ex: ttlSeconds }).then(
    (set) => (set === null ? ("replayed" as const) : ("fresh" as const)),
    () => "unchecked" as const,
  );
  try {
    return await Promise.race([claim, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** A node request whose signature checked out. */
export interface VerifiedNode {
  nodeId: string;
  /** The registry entry, or null for a node that has never registered. */
  node: NodeEntry | null;
  routing: RoutingView;
  body: string;
}

/**
 * Checks a backplane's signed request (same scheme as gateway → backplane, with the node's
 * derived secret). A node not yet in the registry signs with secret version 1, which is how a new
 * node registers itself with its first heartbeat.
 */
export async function verifyNodeRequest(c: Context<AppEnv>): Promise<VerifiedNode> {
  nodeIdHeader(c);
  const body = await c.req.text();
  return { ...(await verifyNodeSignature(c, body)), body };
}

function nodeIdHeader(c: Context<AppEnv>): string {
  const nodeId = c.req.header(NODE_HEADER);
  if (!nodeId || !NODE_ID.test(nodeId)) {
    throw new ApiError("invalid_api_key", `Node requests need a valid ${NODE_HEADER} header and a signature made with the node's secret.`);
  }
  return nodeId;
}

/**
 * The signature check of `verifyNodeRequest` for a body the caller has already read (text, or the
 * bytes of a binary body such as a federated-attention contribution): same key, scheme, clock
 * window and nonce claim, same 401s.
 */
export async function verifyNodeSignature(c: Context<AppEnv>, body: string | Uint8Array<ArrayBuffer>): Promise<Omit<VerifiedNode, "body">> {
  const nodeId = nodeIdHeader(c);
  const routing = await loadRoutingView(c.get("deps"));
  const node = routing.snapshot.nodes.find((n) => n.id === nodeId) ?? null;
  const key = await nodeSigningKey(c.get("deps").secrets.nodeSigning, nodeId, node?.secretVersion ?? 1);
  const url = new URL(c.req.url);
  const received = { timestamp: c.req.header(TIMESTAMP_HEADER), nonce: c.req.header(NONCE_HEADER), signature: c.req.header(SIGNATURE_HEADER) };
  let outcome: VerifyOutcome = await verifyRequest(key, c.req.method, url.pathname + url.search, body, received);
  if (outcome === "ok" && received.timestamp !== undefined && received.nonce !== undefined) {
    const claim = await claimNodeNonce(c.get("deps").redis, c.get("deps").settings.redisPrefix, nodeId, received.nonce, nonceTtlSeconds(received.timestamp));
    if (claim === "unchecked") c.get("deps").log("node_nonce_unchecked", { nodeId, why: "redis unavailable or slow; accepted without the replay check" });
    if (claim === "replayed") outcome = "replayed";
  }
  if (outcome !== "ok") {
    c.get("deps").log("node_signature_rejected", { nodeId, reason: outcome });
    throw new ApiError(
      "invalid_api_key",
      outcome === "stale"
        ? "The node's request is signed more than 60 s away from the gateway's clock. Fix the node's clock (NTP)."
        : outcome === "replayed"
          ? "The node's request reuses a nonce already seen: a replayed request is refused."
          : outcome === "outdated"
            ? "The node signs with the old v1 scheme (no nonce), which the gateway refuses. Upgrade the backplane."
            : `The node's signature is ${outcome}. Check BACKPLANE_SECRET against \`npm run admin -- node secret --id ${nodeId}\`.`,
    );
  }
  return { nodeId, node, routing };
}

/** Parses a JSON body with a zod-like schema, turning failures into a 400 that names the field. */
export function parseNodeBody<T>(body: string, schema: { safeParse(v: unknown): { success: true; data: T } | { success: false; error: { issues: { path: PropertyKey[]; message: string }[] } } }): T {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    throw new ApiError("invalid_json", "The node sent a body that is not JSON.");
  }
  const result = schema.safeParse(json);
  if (!result.success) {
    const issue = result.error.issues[0];
    const param = issue?.path.map(String).join(".") || null;
    throw new ApiError("invalid_value", `Invalid ${param ?? "body"}: ${issue?.message ?? "invalid"}.`, { param });
  }
  return result.data;
}
