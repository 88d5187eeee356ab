/**
 * Requests to a backplane without the gateway: the backplane serves only requests signed for its
 * node (schema/contracts/signing.ts), so measuring "the backplane alone" needs the headers the
 * gateway would send. A signature is valid for MAX_CLOCK_SKEW_SECONDS (60 s) around its timestamp
 * and, since it carries a nonce the backplane remembers, for one request only: sign again for every
 * request (a load generator that replays one header set gets 401 after the first request).
 */
import { deriveNodeSecret, importSigningKey, NODE_HEADER, REQUEST_ID_HEADER, signRequest } from "../../schema/contracts/signing.ts";
import { nodeSigningKey } from "../../worker/src/nodes/keys.ts";

/**
 * The secret to sign with: the node's own (what the backplane has in BACKPLANE_SECRET), or the
 * gateway's master NODE_SIGNING_SECRET, from which the node's is derived as the gateway does it.
 */
export type SigningSecret = { secret: string } | { masterSecret: string; secretVersion?: number };

/** What `signedHeaders` signs. */
export type SignedRequest = SigningSecret & {
  nodeId: string;
  /** Path with query, exactly as sent (e.g. "/v1/chat/completions"). */
  path: string;
  /** The exact body bytes that will be sent ("" for none). */
  body: string | Uint8Array<ArrayBuffer>;
  /** Default POST. */
  method?: string;
  /** Sent as x-request-id (the backplane logs it). */
  requestId?: string;
  /** Signing time in unix seconds (default now). */
  nowSeconds?: number;
};

/** The secret a backplane needs for `nodeId` (its BACKPLANE_SECRET), derived from the gateway's master secret. */
export function nodeSecret(masterSecret: string, nodeId: string, secretVersion = 1): Promise<string> {
  return deriveNodeSecret(masterSecret, nodeId, secretVersion);
}

/**
 * Headers that let a client call a backplane directly: content-type, node id, timestamp, nonce and
 * signature (and x-request-id when given). Valid for one request within 60 s.
 */
export async function signedHeaders(req: SignedRequest): Promise<Record<string, string>> {
  const key = "masterSecret" in req ? await nodeSigningKey(req.masterSecret, req.nodeId, req.secretVersion ?? 1) : await importSigningKey(req.secret);
  const signed = await signRequest(key, req.method ?? "POST", req.path, req.body, req.nowSeconds);
  return {
    "content-type": "application/json",
    [NODE_HEADER]: req.nodeId,
    ...signed,
    ...(req.requestId === undefined ? {} : { [REQUEST_ID_HEADER]: req.requestId }),
  };
}
