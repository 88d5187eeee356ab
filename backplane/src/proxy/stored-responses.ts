import type { IncomingMessage, ServerResponse } from "node:http";
import { Readable } from "node:stream";
import { REQUEST_ID_HEADER } from "../../../schema/contracts/signing.ts";
import type { EnginePool } from "../engines/pool.ts";
import { canTakeRequests, type EngineRuntime } from "../engines/runtime.ts";
import { sendError } from "../errors.ts";

/** How many response ids the backplane remembers the engine of (oldest forgotten first). */
export const MAX_REMEMBERED_RESPONSES = 100_000;

/**
 * Which engine made each stored response (OpenAI Responses API), so that calls naming it reach the
 * engine that holds it in memory. Learned from the `request_id` the gateway puts in every
 * `POST /v1/responses` (vLLM makes it the response's id). Bounded; after a restart, or for an id
 * forgotten, calls try the node's engines in turn (stored-response calls) or the usual choice
 * (a new response with `previous_response_id`).
 */
export class ResponseEngines {
  private readonly byId = new Map<string, string>();
  private readonly max: number;

  constructor(max = MAX_REMEMBERED_RESPONSES) {
    this.max = max;
  }

  remember(responseId: string, engineId: string): void {
    this.byId.delete(responseId);
    this.byId.set(responseId, engineId);
    if (this.byId.size > this.max) {
      const oldest = this.byId.keys().next().value;
      if (oldest !== undefined) this.byId.delete(oldest);
    }
  }

  engineOf(responseId: string): string | undefined {
    return this.byId.get(responseId);
  }

  get size(): number {
    return this.byId.size;
  }
}

/** The ids a `POST /v1/responses` body names: the one it will have, and the one it continues. */
export function responseIdsOf(body: Record<string, unknown>): { id: string | null; previous: string | null } {
  return {
    id: typeof body.request_id === "string" ? body.request_id : null,
    previous: typeof body.previous_response_id === "string" ? body.previous_response_id : null,
  };
}

const HOP_HEADERS = new Set(["connection", "keep-alive", "transfer-encoding", "content-length"]);

/**
 * Serves a call on a stored response (retrieve, delete, cancel, input items): on the engine that
 * made it, or, when the id is not remembered, on each healthy engine in turn until one knows it (an
 * engine answers 404 for ids it does not hold). These calls run no generation, so they take no slot.
 */
export async function serveStoredResponseCall(
  deps: { pool: EnginePool; engines: ResponseEngines },
  req: IncomingMessage,
  res: ServerResponse,
  responseId: string,
  gatewayGone: AbortSignal,
): Promise<void> {
  const known = deps.engines.engineOf(responseId);
  const pinned = known === undefined ? undefined : deps.pool.get(known);
  const order: EngineRuntime[] = pinned ? [pinned] : deps.pool.engines().filter(canTakeRequests);
  if (order.length === 0) return sendError(res, "engine_unavailable", "No healthy engine on this node holds stored responses right now.", { "retry-after": "5" });
  for (const [i, engine] of order.entries()) {
    const headers: Record<string, string> = { accept: req.headers.accept ?? "application/json" };
    if (engine.config.apiKey) headers.authorization = `Bearer ${engine.config.apiKey}`;
    const requestId = req.headers[REQUEST_ID_HEADER];
    if (typeof requestId === "string") headers[REQUEST_ID_HEADER] = requestId;
    let answer: Response;
    try {
      answer = await fetch(new URL(req.url ?? "/", engine.config.url), { method: req.method, headers, signal: gatewayGone });
    } catch {
      if (gatewayGone.aborted) return;
      continue;
    }
    // Another engine may hold it: a 404 is final only from the engine that made it, or the last one.
    if (answer.status === 404 && !pinned && i < order.length - 1) {
      await answer.body?.cancel();
      continue;
    }
    const out: Record<string, string> = { "x-switchyard-engine": engine.id };
    answer.headers.forEach((value, name) => {
      if (!HOP_HEADERS.has(name)) out[name] = value;
    });
    res.writeHead(answer.status, out);
    if (!answer.body) return void res.end();
    Readable.fromWeb(answer.body as import("node:stream/web").ReadableStream<Uint8Array>).on("error", () => res.destroy()).pipe(res);
    return;
  }
  sendError(res, "engine_unavailable", "No engine on this node could be reached for this stored response.", { "retry-after": "5" });
}
