/**
 * Requests to a backplane without the gateway: the backplane serves only requests signed for its
 * node (schema/contracts/signing.ts), so measuring "the backplane alone" needs the headers the
 * gateway would send. A signature is valid for MAX_CLOCK_SKEW_SECONDS (60 s) around its timestamp
 * and, since it carries a nonce the backplane remembers, for one request only: sign again for every
 * request (a load generator that replays one header set gets 401 after the first request). wrk
 * cannot sign, so it gets a pool signed just before its run (`signedPool`), each entry sent once.
 */
import { createHmac, randomBytes } from "node:crypto";
import { deriveNodeSecret, importSigningKey, NODE_HEADER, NONCE_HEADER, REQUEST_ID_HEADER, sha256Hex, SIGNATURE_HEADER, signRequest, TIMESTAMP_HEADER, type SignedHeaders } from "../../schema/contracts/signing.ts";
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

/**
 * `count` signatures of the same request, each with its own nonce, all timestamped now: valid for
 * one request each, within MAX_CLOCK_SKEW_SECONDS of now. For load generators that cannot sign
 * (wrk): send each entry once, in the 60 s after this returns. Signed with node:crypto, about 30
 * times faster than WebCrypto's one-promise-per-signature (a pool holds up to 100 000 entries); the
 * first entry is also signed by `signRequest` and must match, so the two cannot drift apart.
 */
export async function signedPool(req: SigningSecret & { nodeId: string; path: string; body: string; method?: string; count: number }): Promise<(SignedHeaders & Record<string, string>)[]> {
  const secret = "masterSecret" in req ? await deriveNodeSecret(req.masterSecret, req.nodeId, req.secretVersion ?? 1) : req.secret;
  const method = (req.method ?? "POST").toUpperCase();
  const timestamp = String(Math.floor(Date.now() / 1000));
  // The signed string of schema/contracts/signing.ts: v2, method, path, timestamp, nonce, body hash.
  const prefix = `v2\n${method}\n${req.path}\n${timestamp}\n`;
  const suffix = `\n${await sha256Hex(req.body)}`;
  const nonces = randomBytes(16 * req.count).toString("hex");
  const pool: (SignedHeaders & Record<string, string>)[] = [];
  for (let i = 0; i < req.count; i++) {
    const nonce = nonces.slice(i * 32, i * 32 + 32);
    const mac = createHmac("sha256", secret).update(prefix + nonce + suffix).digest("hex");
    pool.push({ [TIMESTAMP_HEADER]: timestamp, [NONCE_HEADER]: nonce, [SIGNATURE_HEADER]: `v2=${mac}` });
  }
  const first = pool[0];
  if (first !== undefined) {
    const reference = await signRequest(await importSigningKey(secret), method, req.path, req.body, Number(timestamp), first[NONCE_HEADER]);
    if (reference[SIGNATURE_HEADER] !== first[SIGNATURE_HEADER]) throw new Error("signedPool: node:crypto and signRequest disagree; the signing scheme changed");
  }
  return pool;
}
