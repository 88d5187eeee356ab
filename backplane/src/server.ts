import { readFileSync } from "node:fs";
import type { ExpositionFormat } from "./metrics/registry.ts";
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { storedResponseCall, storedResponseMethodAllowed } from "../../schema/contracts/responses.ts";
import { importSigningKey, type SigningKey } from "../../schema/contracts/signing.ts";
import { MAX_REPORTS_PER_ASK, parseReportAsk, REPORT_WAIT_MS, STREAM_REPORT_PATH, type StreamReport } from "../../schema/contracts/stream-report.ts";
import type { BackplaneConfig } from "./config.ts";
import { sendError } from "./errors.ts";
import type { Log } from "./log.ts";
import { handleManagement, type ManagementDeps } from "./management/routes.ts";
import { handleInference, type ProxyDeps } from "./proxy/handler.ts";
import { NonceStore } from "./proxy/replay.ts";
import { AUDIO_PATHS, MAX_AUDIO_BODY_BYTES } from "./proxy/audio-form.ts";
import { verifyGatewayRequest } from "./proxy/verify.ts";
import { gatewayRank } from "./proxy/priority.ts";

const MAX_BODY_BYTES = 10 * 1024 * 1024;

/** Everything the HTTP layer serves; the daemon builds it. */
export interface ServerDeps {
  config: BackplaneConfig;
  log: Log;
  proxy: ProxyDeps;
  management: ManagementDeps;
  /** `GET /health` body and whether the node takes requests (200) or not (503). */
  health: () => { ok: boolean; body: unknown };
  /** `GET /metrics` text. */
  /** The /metrics text in the format the scraper asked for (OpenMetrics carries exemplars). */
  metrics: (format: ExpositionFormat) => string;
}

/** An ask names at most MAX_REPORTS_PER_ASK tokens of 32 characters: a few KB. */
const MAX_ASK_BYTES = 64 * 1024;

function readBody(req: IncomingMessage, maxBytes = MAX_BODY_BYTES): Promise<Uint8Array<ArrayBuffer> | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
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

/**
 * Answers `POST /stream-reports` `{"tokens": [...]}` once every named stream has ended (or
 * REPORT_WAIT_MS after the ask) with `{"reports": {token: report | null}}`: null for a token it does
 * not know, already gave, or whose stream still runs, so the answer tells nothing about which tokens
 * exist. A gateway that hangs up while waiting drops its wait (the reports stay until their TTL).
 */
async function serveStreamReports(reports: ProxyDeps["reports"], req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method !== "POST") return sendError(res, "method_not_allowed", `Use POST for ${STREAM_REPORT_PATH}.`);
  const gone = new AbortController();
  res.once("close", () => {
    if (!res.writableFinished) gone.abort();
  });
  const body = await readBody(req, MAX_ASK_BYTES);
  let tokens: string[] | null;
  try {
    tokens = body === null ? null : parseReportAsk(JSON.parse(Buffer.from(body).toString("utf8")));
  } catch {
    tokens = null;
  }
  if (tokens === null) {
    return sendError(res, "bad_request", `The body must be {"tokens": [...]}: 1 to ${MAX_REPORTS_PER_ASK} report tokens of 32 hex characters.`);
  }
  const deadline = AbortSignal.any([gone.signal, AbortSignal.timeout(REPORT_WAIT_MS)]);
  const taken = await Promise.all(tokens.map((token) => reports.take(token, deadline)));
  if (res.destroyed) return;
  const answer: Record<string, StreamReport | null> = {};
  tokens.forEach((token, i) => (answer[token] = taken[i] ?? null));
  const text = JSON.stringify({ reports: answer });
  res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text), "cache-control": "no-store" });
  res.end(text);
}

/** vLLM's routes outside /v1 that the gateway forwards (rerank, score, tokenize, detokenize). */
const ENGINE_ROOT_PATHS = new Set(["/rerank", "/score", "/tokenize", "/detokenize"]);

/**
 * The backplane's HTTP(S) server. `/health` and `/metrics` are open (probes and scrapers), and so
 * is `/stream-reports` (its tokens are the capability); every other route — inference under
 * `/v1/` and vLLM's `/rerank`, `/score`, `/tokenize`, `/detokenize`, and `/management/…` — must carry the gateway's signature, which is checked before anything
 * else happens.
 */
export class BackplaneServer {
  private readonly deps: ServerDeps;
  private readonly server: Server;
  private readonly key: Promise<SigningKey>;
  private readonly nonces = new NonceStore();
  private closing: Promise<void> | null = null;

  constructor(deps: ServerDeps) {
    this.deps = deps;
    const { config } = deps;
    this.key = importSigningKey(config.secret);
    const handler = (req: IncomingMessage, res: ServerResponse) => {
      this.handle(req, res).catch((err: unknown) => {
        deps.log("handler_error", { error: err instanceof Error ? err.message : String(err) }, "error");
        sendError(res, "engine_error", "The backplane failed to handle the request.");
      });
    };
    this.server =
      config.tlsCertFile && config.tlsKeyFile
        ? createHttpsServer({ cert: readFileSync(config.tlsCertFile), key: readFileSync(config.tlsKeyFile) }, handler)
        : createHttpServer(handler);
    // Longer than the gateway's idle keep-alive so the node never closes a connection being reused.
    this.server.keepAliveTimeout = 65_000;
  }

  /** Starts listening; resolves with the base URL. */
  async listen(): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.deps.config.port, this.deps.config.host, () => {
        this.server.off("error", reject);
        resolve();
      });
    });
    return this.url;
  }

  /** The URL the server listens on. */
  get url(): string {
    const address = this.server.address() as AddressInfo;
    const scheme = this.deps.config.tlsCertFile ? "https" : "http";
    const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
    return `${scheme}://${host === "0.0.0.0" || host === "[::]" ? "127.0.0.1" : host}:${address.port}`;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    if (req.method === "GET" && path === "/health") {
      const { ok, body } = this.deps.health();
      res.writeHead(ok ? 200 : 503, { "content-type": "application/json" });
      return void res.end(JSON.stringify(body));
    }
    if (req.method === "GET" && path === "/metrics") {
      const openMetrics = (req.headers.accept ?? "").includes("application/openmetrics-text");
      res.writeHead(200, { "content-type": openMetrics ? "application/openmetrics-text; version=1.0.0; charset=utf-8" : "text/plain; version=0.0.4; charset=utf-8" });
      return void res.end(this.deps.metrics(openMetrics ? "openmetrics" : "prometheus"));
    }
    if (path === STREAM_REPORT_PATH) {
      // Not signed: the token is 128 random bits sent only to the gateway, in the answer to a signed
      // request, and a report is given once (schema/contracts/stream-report.ts). Whoever could read
      // the token could read the stream itself; a signature would add a signing and a nonce per stream.
      return serveStreamReports(this.deps.proxy.reports, req, res);
    }
    const isInference = path.startsWith("/v1/") || ENGINE_ROOT_PATHS.has(path);
    if (!isInference && !path.startsWith("/management/")) return sendError(res, "not_found", `No route for ${req.method} ${path} on the backplane.`);
    // Listen before the first await: a gateway that gives up while the body is read or the
    // signature checked has already closed the connection by the time the engine would be called,
    // and a 'close' listener added then would never fire (the engine would run to its first token).
    const gatewayGone = new AbortController();
    res.once("close", () => {
      if (!res.writableFinished) gatewayGone.abort();
    });
    const audio = AUDIO_PATHS.has(path);
    const body = await readBody(req, audio ? MAX_AUDIO_BODY_BYTES : MAX_BODY_BYTES);
    if (body === null) return sendError(res, "request_too_large", audio ? "Audio uploads are limited to 25 MB." : "Request bodies are limited to 10 MB.");
    const outcome = await verifyGatewayRequest(await this.key, this.deps.config.nodeId, this.nonces, req, body);
    if (outcome === "nonces_full") {
      this.deps.log("nonce_store_full", { path }, "error");
      return sendError(res, "overloaded", "This node has accepted too many signed requests in the last two minutes to check one more for replay. Retry on another node.", { "retry-after": "1" });
    }
    if (outcome !== "ok") {
      this.deps.log("signature_rejected", { reason: outcome, path, remote: req.socket.remoteAddress }, "warn");
      return sendError(res, "unauthorized", `Request rejected: signature ${outcome}. Only the Switchyard gateway may call this node.`);
    }
    if (isInference) {
      const stored = storedResponseCall(path);
      if (stored ? !storedResponseMethodAllowed(stored.op, req.method ?? "") : req.method !== "POST") {
        return sendError(res, "method_not_allowed", `${req.method ?? "This method"} is not allowed on ${path}.`);
      }
      return handleInference(this.deps.proxy, req, res, body, gatewayGone.signal, await gatewayRank(await this.key, req));
    }
    return handleManagement(this.deps.management, req, res, body);
  }

  /** Stops accepting connections and waits for open responses to finish. Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
    });
    return this.closing;
  }

  /** Ends every connection at once (second signal). */
  destroy(): void {
    this.server.closeAllConnections();
  }
}
