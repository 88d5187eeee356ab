import type { IncomingMessage, ServerResponse } from "node:http";
import type { EnginePool } from "../engines/pool.ts";
import { createOllamaClient, OllamaError } from "../engines/ollama-management.ts";
import type { EngineRuntime } from "../engines/runtime.ts";
import { sendError } from "../errors.ts";
import { readSystemResources } from "../system/resources.ts";
import { ADAPTERS_PATH, type LoraAdapterRoutes } from "./adapters.ts";

/** What the management routes need. */
export interface ManagementDeps {
  pool: EnginePool;
  nvidiaSmiPath: string;
  /** Called after a model was pulled or deleted (refresh the registry). */
  onModelsChanged: (engineId: string) => void;
  /** LoRA adapters of the vLLM engines (adapters.ts). */
  adapters: LoraAdapterRoutes;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function ollamaEngine(pool: EnginePool, url: URL, res: ServerResponse): EngineRuntime | null {
  const wanted = url.searchParams.get("engine");
  const ollama = pool.engines().filter((e) => e.config.kind === "ollama" && (wanted === null || e.id === wanted));
  if (ollama.length === 1 && ollama[0]) return ollama[0];
  sendError(
    res,
    "conflict",
    ollama.length === 0
      ? `Model management needs an Ollama engine${wanted ? ` with id '${wanted}'` : ""} on this node.`
      : `Several Ollama engines run on this node: name one with ?engine=<id> (${ollama.map((e) => e.id).join(", ")}).`,
  );
  return null;
}

async function forOllama(res: ServerResponse, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof OllamaError) {
      return sendError(res, err.status === 404 ? "not_found" : err.status >= 500 ? "engine_error" : "bad_request", `Ollama: ${err.message}`);
    }
    sendError(res, "engine_error", `Ollama is unreachable: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/**
 * `/management/…` (signed like every gateway request): host resources, model management
 * through Ollama engines — list, show, pull with NDJSON progress, delete — and the LoRA adapters
 * of vLLM engines (adapters.ts).
 */
export async function handleManagement(deps: ManagementDeps, req: IncomingMessage, res: ServerResponse, body: Uint8Array): Promise<void> {
  const url = new URL(req.url ?? "/", "http://backplane");
  const method = req.method ?? "GET";
  if (method === "GET" && url.pathname === "/management/system/resources") {
    return json(res, 200, await readSystemResources({ nvidiaSmiPath: deps.nvidiaSmiPath }));
  }
  if (url.pathname === ADAPTERS_PATH || url.pathname.startsWith(`${ADAPTERS_PATH}/`)) return deps.adapters.handle(method, url, body, res);
  if (method === "GET" && url.pathname === "/management/models") {
    const engines = deps.pool.reports().map((r) => ({ id: r.id, kind: r.kind, healthy: r.healthy, models: r.models }));
    const ollama = await Promise.all(
      deps.pool
        .engines()
        .filter((e) => e.config.kind === "ollama")
        .map(async (e) => ({ engine: e.id, models: await createOllamaClient(e.config.url, { timeoutMs: 10_000 }).list().catch(() => null) })),
    );
    return json(res, 200, { engines, ollama });
  }
  if (method === "POST" && url.pathname === "/management/models/pull") {
    let model: unknown;
    try {
      model = (JSON.parse(Buffer.from(body).toString("utf8")) as { model?: unknown }).model;
    } catch {
      model = undefined;
    }
    if (typeof model !== "string" || model === "") return sendError(res, "bad_request", "Send {\"model\": \"name:tag\"} to pull.");
    const engine = ollamaEngine(deps.pool, url, res);
    if (!engine) return;
    const abort = new AbortController();
    res.on("close", () => abort.abort());
    return forOllama(res, async () => {
      const progress = await createOllamaClient(engine.config.url).pull(model, abort.signal);
      res.writeHead(200, { "content-type": "application/x-ndjson", "cache-control": "no-cache" });
      let succeeded = false;
      for await (const line of progress) {
        res.write(`${JSON.stringify(line)}\n`);
        if (line.status === "success") succeeded = true;
      }
      res.end();
      if (succeeded) deps.onModelsChanged(engine.id);
    });
  }
  const modelPath = /^\/management\/models\/(.+)$/.exec(url.pathname);
  const name = modelPath?.[1] ? decodeURIComponent(modelPath[1]) : null;
  if (name && (method === "GET" || method === "DELETE")) {
    const engine = ollamaEngine(deps.pool, url, res);
    if (!engine) return;
    const client = createOllamaClient(engine.config.url, { timeoutMs: 30_000 });
    return forOllama(res, async () => {
      if (method === "GET") return json(res, 200, await client.show(name));
      const removed = await client.remove(name);
      if (!removed.removed) return sendError(res, "not_found", `Ollama: ${removed.message}`);
      deps.onModelsChanged(engine.id);
      json(res, 200, { deleted: name, engine: engine.id });
    });
  }
  sendError(res, "not_found", `No management route for ${method} ${url.pathname}.`);
}
