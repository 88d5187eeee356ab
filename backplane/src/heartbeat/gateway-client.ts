import { NODE_HEADER, importSigningKey, signRequest, type SigningKey } from "../../../schema/contracts/signing.ts";

/** Signed POSTs from this node to the gateway (heartbeats, spot notices). */
export interface GatewayClient {
  post(path: string, body: unknown, timeoutMs: number): Promise<Response>;
}

/** A client signing with the node's secret, as the gateway signs its requests to the node. */
export function createGatewayClient(gatewayUrl: string, nodeId: string, secret: string): GatewayClient {
  let key: Promise<SigningKey> | null = null;
  return {
    async post(path, body, timeoutMs) {
      key ??= importSigningKey(secret);
      const raw = JSON.stringify(body);
      const headers = await signRequest(await key, "POST", path, raw);
      return fetch(`${gatewayUrl}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", [NODE_HEADER]: nodeId, ...headers },
        body: raw,
        signal: AbortSignal.timeout(timeoutMs),
      });
    },
  };
}
