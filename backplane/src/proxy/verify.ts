import type { IncomingMessage } from "node:http";
import {
  NODE_HEADER,
  SIGNATURE_HEADER,
  TIMESTAMP_HEADER,
  verifyRequest,
  type SigningKey,
  type VerifyOutcome,
} from "../../../schema/contracts/signing.ts";

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Checks that a request was signed by the gateway for this node, within the allowed clock skew.
 * Runs before anything touches the engine.
 */
export async function verifyGatewayRequest(
  key: SigningKey,
  nodeId: string,
  req: IncomingMessage,
  body: Uint8Array<ArrayBuffer>,
): Promise<VerifyOutcome | "wrong_node"> {
  const target = header(req, NODE_HEADER);
  if (target !== undefined && target !== nodeId) return "wrong_node";
  return verifyRequest(key, req.method ?? "GET", req.url ?? "/", body, header(req, TIMESTAMP_HEADER), header(req, SIGNATURE_HEADER));
}
