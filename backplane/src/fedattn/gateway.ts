/**
 * Signed calls from a participant node to the gateway's `/v1/fedattn/...` API (docs/fedattn.md,
 * "Coordinator API"), signed exactly as heartbeats are: `x-switchyard-node` plus the v2 signature
 * over the method, the path with its query and the SHA-256 of the body's raw bytes (a binary
 * contribution included), with a fresh nonce per call.
 */
import { NODE_HEADER, importSigningKey, signRequest, type SigningKey } from "../../../schema/contracts/signing.ts";
import { describeError, errorMessage } from "../describe-error.ts";
import { FedattnError } from "./errors.ts";

/** A body to send: JSON (serialised once, and signed as sent) or the raw bytes of a tensor message. */
export type GatewayBody = { json: unknown } | { bytes: Uint8Array<ArrayBuffer> } | null;

/** Signed calls to the gateway; each resolves to the response of a 2xx or throws a FedattnError. */
export interface FedattnGateway {
  call(method: "GET" | "POST", path: string, body: GatewayBody, timeoutMs: number): Promise<Response>;
}

/** A client for `gatewayUrl` signing as `nodeId` with `secret`; `fetchFn` is injectable for tests. */
export function createFedattnGateway(gatewayUrl: string, nodeId: string, secret: string, fetchFn: typeof fetch = fetch): FedattnGateway {
  let key: Promise<SigningKey> | null = null;
  const base = gatewayUrl.replace(/\/+$/, "");
  return {
    async call(method, path, body, timeoutMs) {
      key ??= importSigningKey(secret);
      const payload: string | Uint8Array<ArrayBuffer> = body === null ? "" : "json" in body ? JSON.stringify(body.json) : body.bytes;
      const headers: Record<string, string> = { [NODE_HEADER]: nodeId, ...(await signRequest(await key, method, path, payload)) };
      if (body !== null) headers["content-type"] = "json" in body ? "application/json" : "application/octet-stream";
      let res: Response;
      try {
        res = await fetchFn(`${base}${path}`, { method, headers, body: method === "GET" ? undefined : payload, signal: AbortSignal.timeout(timeoutMs) });
      } catch (err) {
        throw new FedattnError("gateway_unreachable", `${method} ${base}${path}: the gateway did not answer (${describeError(err, timeoutMs)}). Check --gateway-url / BACKPLANE_GATEWAY_URL and that this host can reach it.`);
      }
      if (res.ok) return res;
      const said = errorMessage(await res.text().catch(() => ""));
      const hint = res.status === 401 ? " (check BACKPLANE_SECRET against `npm run admin -- node secret --id " + nodeId + "`, and the clock)" : "";
      throw new FedattnError("gateway_error", `${method} ${path}: the gateway answered ${res.status}: ${said || "no reason given"}${hint}`, res.status);
    },
  };
}
