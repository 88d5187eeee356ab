import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { importSigningKey, type SigningKey } from "../../schema/contracts/signing.ts";
import type { BackplaneConfig } from "./config.ts";
import { sendError } from "./errors.ts";
import { forwardToEngine } from "./proxy/engine-forward.ts";
import { verifyGatewayRequest } from "./proxy/verify.ts";
import { probeEngine } from "./engines/probe.ts";

const MAX_BODY_BYTES = 10 * 1024 * 1024;

type Log = (event: string, fields: Record<string, unknown>) => void;

function readBody(req: IncomingMessage): Promise<Uint8Array<ArrayBuffer> | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        resolve(null);
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      const joined = Buffer.concat(chunks);
      resolve(new Uint8Array(joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength)));
    });
    req.on("error", reject);
  });
}

/** The backplane HTTP(S) server: verifies the gateway's signature, then proxies to the engine. */
export class BackplaneServer {
  readonly config: BackplaneConfig;
  private readonly server: Server;
  private readonly key: Promise<SigningKey>;
  private readonly log: Log;
  private closing: Promise<void> | null = null;

  constructor(config: BackplaneConfig, log: Log = () => {}) {
    this.config = config;
    this.log = log;
    this.key = importSigningKey(config.secret);
    const handler = (req: IncomingMessage, res: ServerResponse) => {
      this.handle(req, res).catch((err: unknown) => {
        this.log("handler_error", { error: String(err) });
        sendError(res, "engine_unavailable", "The backplane failed to handle the request.");
      });
    };
    this.server =
      config.tlsCertFile && config.tlsKeyFile
        ? createHttpsServer({ cert: readFileSync(config.tlsCertFile), key: readFileSync(config.tlsKeyFile) }, handler)
        : createHttpServer(handler);
    this.server.keepAliveTimeout = 65_000;
  }

  /** Starts listening; resolves with the base URL. */
  async listen(): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.config.port, this.config.host, () => resolve());
    });
    return this.url;
  }

  /** The URL the server listens on. */
  get url(): string {
    const address = this.server.address() as AddressInfo;
    const scheme = this.config.tlsCertFile ? "https" : "http";
    const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
    return `${scheme}://${host === "0.0.0.0" ? "127.0.0.1" : host}:${address.port}`;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method === "GET" && path === "/health") return this.health(res);
    if (req.method !== "POST" || !path?.startsWith("/v1/")) {
      return sendError(res, "not_found", `No route for ${req.method} ${path} on the backplane.`);
    }
    const body = await readBody(req);
    if (body === null) return sendError(res, "request_too_large", "Request bodies are limited to 10 MB.");
    const outcome = await verifyGatewayRequest(await this.key, this.config.nodeId, req, body);
    if (outcome !== "ok") {
      this.log("signature_rejected", { reason: outcome, path, remote: req.socket.remoteAddress });
      return sendError(res, "unauthorized", `Request rejected: signature ${outcome}. Only the Switchyard gateway may call this node.`);
    }
    await forwardToEngine(
      { baseUrl: this.config.engineUrl, apiKey: this.config.engineApiKey, timeoutMs: this.config.engineTimeoutMs },
      req,
      body,
      res,
    );
  }

  private async health(res: ServerResponse): Promise<void> {
    const engine = await probeEngine(this.config.engineUrl, 2_000);
    const status = engine.healthy ? "ready" : "unhealthy";
    const body = JSON.stringify({ status, node_id: this.config.nodeId, engine: { url: this.config.engineUrl, ...engine } });
    res.writeHead(engine.healthy ? 200 : 503, { "content-type": "application/json" });
    res.end(body);
  }

  /** Stops accepting connections and waits for in-flight responses. Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
    });
    return this.closing;
  }
}
