import { createHash, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createFedattnSimState } from "../fedattn/sim-routes.ts";
import type { EngineState } from "./engine.ts";
import { sendJson } from "./errors.ts";
import { initialLoras } from "./lora.ts";
import { createModelMetrics } from "./metrics.ts";
import { type SimOptions, simOptions } from "./options.ts";
import { route } from "./routes.ts";
import { createScheduler } from "./scheduler.ts";

/** Counters a test can read without scraping /metrics. */
export interface SimStats {
  /** Every HTTP request to /v1/* received, including rejected ones. */
  requests: number;
}

/** A running simulated engine. */
export interface SimEngine {
  /** Base URL without /v1, e.g. http://127.0.0.1:8000. */
  readonly url: string;
  readonly port: number;
  readonly stats: SimStats;
  /** Stops listening, aborts every request and drops connections; safe to call twice. */
  close(): Promise<void>;
}

/** uvicorn's --timeout-keep-alive default, which vLLM keeps (TIMEOUT_KEEP_ALIVE = 5 s). */
const KEEP_ALIVE_MS = 5_000;

function sha256(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

/** vLLM's AuthenticationMiddleware: `Bearer <key>` (scheme case-insensitive), compared as SHA-256 digests. */
function bearerMatches(header: string | undefined, expected: Buffer): boolean {
  if (!header) return false;
  const space = header.indexOf(" ");
  const scheme = space === -1 ? header : header.slice(0, space);
  if (scheme.toLowerCase() !== "bearer") return false;
  return timingSafeEqual(sha256(space === -1 ? "" : header.slice(space + 1)), expected);
}

function connectableHost(host: string): string {
  if (host === "0.0.0.0") return "127.0.0.1";
  if (host === "::") return "[::1]";
  return host.includes(":") ? `[${host}]` : host;
}

/** The simulator's HTTP server; owns the engine state and every live request. */
export class SimServer implements SimEngine {
  readonly url: string;
  readonly port: number;
  readonly stats: SimStats;
  readonly options: SimOptions;
  readonly #server: Server;
  readonly #state: EngineState;
  #closing: Promise<void> | null = null;

  private constructor(server: Server, state: EngineState, stats: SimStats, port: number) {
    this.#server = server;
    this.#state = state;
    this.stats = stats;
    this.options = state.options;
    this.port = port;
    this.url = `http://${connectableHost(state.options.host)}:${port}`;
  }

  /** Validates options, then listens; rejects if the port cannot be bound. */
  static async start(partial: Partial<SimOptions> = {}): Promise<SimServer> {
    const options = simOptions(partial);
    const state: EngineState = {
      options,
      scheduler: createScheduler(options.maxConcurrency, options.schedulingPolicy),
      metrics: new Map(options.models.map((model) => [model.name, createModelMetrics(model, options.maxConcurrency)])),
      live: new Set(),
      loras: initialLoras(options),
      fedattn: createFedattnSimState(),
    };
    const stats: SimStats = { requests: 0 };
    const keyDigest = options.apiKey === undefined ? null : sha256(options.apiKey);

    const server = createServer({ noDelay: true }, (req: IncomingMessage, res: ServerResponse) => {
      const arrival = performance.now();
      res.setHeader("server", "uvicorn");
      const url = req.url ?? "/";
      const query = url.indexOf("?");
      const path = query === -1 ? url : url.slice(0, query);
      if (path.startsWith("/v1")) {
        stats.requests++;
        // Only /v1/* is protected, and CORS preflights pass (vLLM's middleware).
        if (keyDigest && req.method !== "OPTIONS" && !bearerMatches(req.headers.authorization, keyDigest)) {
          req.resume();
          return sendJson(res, 401, JSON.stringify({ error: "Unauthorized" }));
        }
      }
      route(state, req, res, path, arrival);
    });
    server.keepAliveTimeout = KEEP_ALIVE_MS;

    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.port, options.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const port = (server.address() as AddressInfo).port;
    return new SimServer(server, state, stats, port);
  }

  close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      const live = [...this.#state.live];
      // Waiting requests first, so aborting a running one does not hand its slot to them.
      for (const job of live) if (job.waiting) job.abort();
      for (const job of live) job.abort();
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
    return this.#closing;
  }
}

/** Starts a simulated vLLM engine (port 0 = any free port). */
export function startSimEngine(options: Partial<SimOptions> = {}): Promise<SimEngine> {
  return SimServer.start(options);
}
