import type { IncomingMessage } from "node:http";
import {
  NODE_HEADER,
  NONCE_HEADER,
  nonceTtlSeconds,
  SIGNATURE_HEADER,
  TIMESTAMP_HEADER,
  verifyRequest,
  type SigningKey,
  type VerifyOutcome,
} from "../../../schema/contracts/signing.ts";
import type { NonceStore } from "./replay.ts";

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Checks that a request was signed by the gateway for this node, within the allowed clock skew,
 * and that its nonce was not seen before (a replayed capture). Runs before anything touches the
 * engine. The nonce is claimed only once the MAC checked out, so unsigned traffic cannot fill the
 * store; `nonces_full` means the store is at its cap and the request is refused rather than risk a replay.
 */
export async function verifyGatewayRequest(
  key: SigningKey,
  nodeId: string,
  nonces: NonceStore,
  req: IncomingMessage,
  body: Uint8Array<ArrayBuffer>,
): Promise<VerifyOutcome | "wrong_node" | "nonces_full"> {
  const target = header(req, NODE_HEADER);
  if (target !== undefined && target !== nodeId) return "wrong_node";
  const received = { timestamp: header(req, TIMESTAMP_HEADER), nonce: header(req, NONCE_HEADER), signature: header(req, SIGNATURE_HEADER) };
  const outcome = await verifyRequest(key, req.method ?? "GET", req.url ?? "/", body, received);
  if (outcome !== "ok" || received.timestamp === undefined || received.nonce === undefined) return outcome;
  const claim = nonces.claim(received.nonce, Date.now() + nonceTtlSeconds(received.timestamp) * 1000);
  return claim === "fresh" ? "ok" : claim === "full" ? "nonces_full" : "replayed";
}
