import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { HEARTBEAT_PATH, heartbeatSchema, PROBE_PATH, SPOT_PATH, spotNoticeSchema, type Heartbeat, type SpotNotice } from "../../schema/contracts/heartbeat.ts";
import { NonceStore } from "../../backplane/src/proxy/replay.ts";
import { NODE_HEADER, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, importSigningKey, nonceTtlSeconds, verifyRequest, type VerifyOutcome } from "../../schema/contracts/signing.ts";

/** A loopback stand-in for the gateway's node routes, for backplane tests that run without workerd. */
export interface RecordingGateway {
  url: string;
  heartbeats: Heartbeat[];
  spotNotices: SpotNotice[];
  /** Requests refused because their signature or body was wrong. */
  rejected: string[];
  /** Node ids of the secret probes it accepted (`backplane doctor`). */
  probes: string[];
  close(): Promise<void>;
}

/** The 401 message the worker gives for a refused node signature (worker/src/nodes/verify.ts). */
function refusal(outcome: VerifyOutcome, nodeId: string): string {
  if (outcome === "stale") return "The node's request is signed more than 60 s away from the gateway's clock. Fix the node's clock (NTP).";
  if (outcome === "replayed") return "The node's request reuses a nonce already seen: a replayed request is refused.";
  if (outcome === "outdated") return "The node signs with the old v1 scheme (no nonce), which the gateway refuses. Upgrade the backplane.";
  return `The node's signature is ${outcome}. Check BACKPLANE_SECRET against \`npm run admin -- node secret --id ${nodeId}\`.`;
}

/**
 * Accepts heartbeats, spot notices and secret probes exactly as the worker does: the signature is
 * checked with the node's secret (a reused nonce is refused as a replay, with the worker's 401
 * message) and the body with the shared zod schemas; `GET /health` answers 200 with a Date header.
 * (The worker's own routes are tested in tests/worker/nodes.test.ts, node-probe.test.ts and end to
 * end in tests/e2e.)
 */
export async function startRecordingGateway(secret: string, opts: { clockOffsetSeconds?: number } = {}): Promise<RecordingGateway> {
  const key = await importSigningKey(secret);
  const state: Omit<RecordingGateway, "url" | "close"> = { heartbeats: [], spotNotices: [], rejected: [], probes: [] };
  const nonces = new NonceStore();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      void (async () => {
        const body = Buffer.concat(chunks).toString("utf8");
        if (req.method === "GET" && req.url === "/health") {
          res.writeHead(200, { "content-type": "application/json" }).end('{"status":"ok"}');
          return;
        }
        const header = (name: string) => {
          const v = req.headers[name];
          return Array.isArray(v) ? v[0] : v;
        };
        const received = { timestamp: header(TIMESTAMP_HEADER), nonce: header(NONCE_HEADER), signature: header(SIGNATURE_HEADER) };
        // A gateway whose clock is off by clockOffsetSeconds (to test clock skew).
        const nowSeconds = Math.floor(Date.now() / 1000) + (opts.clockOffsetSeconds ?? 0);
        let outcome = await verifyRequest(key, req.method ?? "", req.url ?? "", body, received, nowSeconds);
        if (outcome === "ok" && received.timestamp !== undefined && received.nonce !== undefined) {
          if (nonces.claim(received.nonce, Date.now() + nonceTtlSeconds(received.timestamp, nowSeconds) * 1000) !== "fresh") outcome = "replayed";
        }
        const nodeId = header(NODE_HEADER);
        if (outcome !== "ok" || !nodeId) {
          state.rejected.push(`${req.url}: ${outcome}`);
          const error = { message: refusal(outcome, nodeId ?? ""), type: "invalid_request_error", param: null, code: "invalid_api_key" };
          res.writeHead(401, { "content-type": "application/json" }).end(JSON.stringify({ error }));
          return;
        }
        if (req.url === PROBE_PATH) {
          state.probes.push(nodeId);
          res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ ok: true, node_id: nodeId, server_time: Date.now() }));
          return;
        }
        const json: unknown = JSON.parse(body);
        if (req.url === HEARTBEAT_PATH) {
          const parsed = heartbeatSchema.safeParse(json);
          if (!parsed.success) {
            state.rejected.push(`heartbeat: ${parsed.error.message}`);
            res.writeHead(400).end();
            return;
          }
          state.heartbeats.push(parsed.data);
          res.writeHead(200, { "content-type": "application/json" }).end('{"ok":true}');
        } else if (req.url === SPOT_PATH) {
          const parsed = spotNoticeSchema.safeParse(json);
          if (!parsed.success) {
            state.rejected.push(`spot: ${parsed.error.message}`);
            res.writeHead(400).end();
            return;
          }
          state.spotNotices.push(parsed.data);
          res.writeHead(202, { "content-type": "application/json" }).end('{"ok":true}');
        } else {
          res.writeHead(404).end();
        }
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    ...state,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
