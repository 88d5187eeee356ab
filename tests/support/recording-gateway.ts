import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { HEARTBEAT_PATH, heartbeatSchema, SPOT_PATH, spotNoticeSchema, type Heartbeat, type SpotNotice } from "../../schema/contracts/heartbeat.ts";
import { NonceStore } from "../../backplane/src/proxy/replay.ts";
import { NODE_HEADER, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, importSigningKey, nonceTtlSeconds, verifyRequest } from "../../schema/contracts/signing.ts";

/** A loopback stand-in for the gateway's node routes, for backplane tests that run without workerd. */
export interface RecordingGateway {
  url: string;
  heartbeats: Heartbeat[];
  spotNotices: SpotNotice[];
  /** Requests refused because their signature or body was wrong. */
  rejected: string[];
  close(): Promise<void>;
}

/**
 * Accepts heartbeats and spot notices exactly as the worker does: the signature is checked with
 * the node's secret (a reused nonce is refused as a replay) and the body with the shared zod schemas. (The worker's own routes are tested
 * in tests/worker/nodes.test.ts and end to end in tests/e2e.)
 */
export async function startRecordingGateway(secret: string): Promise<RecordingGateway> {
  const key = await importSigningKey(secret);
  const state: Omit<RecordingGateway, "url" | "close"> = { heartbeats: [], spotNotices: [], rejected: [] };
  const nonces = new NonceStore();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      void (async () => {
        const body = Buffer.concat(chunks).toString("utf8");
        const header = (name: string) => {
          const v = req.headers[name];
          return Array.isArray(v) ? v[0] : v;
        };
        const received = { timestamp: header(TIMESTAMP_HEADER), nonce: header(NONCE_HEADER), signature: header(SIGNATURE_HEADER) };
        let outcome = await verifyRequest(key, req.method ?? "", req.url ?? "", body, received);
        if (outcome === "ok" && received.timestamp !== undefined && received.nonce !== undefined) {
          if (nonces.claim(received.nonce, Date.now() + nonceTtlSeconds(received.timestamp) * 1000) !== "fresh") outcome = "replayed";
        }
        if (outcome !== "ok" || !header(NODE_HEADER)) {
          state.rejected.push(`${req.url}: ${outcome}`);
          res.writeHead(401).end();
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
