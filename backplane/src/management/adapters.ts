/**
 * `/management/adapters` (signed like every gateway request): the LoRA adapters of this node's vLLM
 * (and simulator) engines, loaded and unloaded at runtime through vLLM's own routes (engines/lora.ts).
 *
 * - `GET /management/adapters`: per engine, its base models and the adapters it serves.
 * - `POST /management/adapters` `{name, source, base, engine?}`: loads `name` from `source` (the
 *   engine's `lora_path`) on the least-loaded engine serving `base` (or on `engine`). Idempotent: an
 *   adapter already served answers 200 at once, and concurrent loads of one name share one engine call.
 *   The adapter is added to the engine's models at once, so a request sent right after is accepted.
 * - `DELETE /management/adapters/<name>[?engine=id]`: unloads it from the engines that serve it.
 */
import type { ServerResponse } from "node:http";
import { z } from "zod";
import type { EnginePool } from "../engines/pool.ts";
import { loadLoraAdapter, type LoraCallOutcome, unloadLoraAdapter } from "../engines/lora.ts";
import { canTakeRequests, compareLoad, type EngineRuntime, supportsLora } from "../engines/runtime.ts";
import { sendError } from "../errors.ts";
import type { Log } from "../log.ts";

/** Path prefix of the adapter routes. */
export const ADAPTERS_PATH = "/management/adapters";

const RUNTIME_LOADING_HINT =
  "start the engine with the environment variable VLLM_ALLOW_RUNTIME_LORA_UPDATING=True (and vLLM with --enable-lora), or serve the adapter with --lora-modules";

const loadBody = z.strictObject({
  name: z.string().min(1).max(256),
  source: z.string().min(1).max(4096),
  base: z.string().min(1).max(256),
  engine: z.string().min(1).max(64).optional(),
});

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

/** An engine's base models: what it serves that is not one of its adapters. */
function baseModels(engine: EngineRuntime): string[] {
  return engine.models.filter((m) => !engine.adapters.some((a) => a.name === m));
}

/** Writes the answer for an engine call that did not succeed. */
function sendFailure(res: ServerResponse, engine: EngineRuntime, action: "load" | "unload", name: string, outcome: Exclude<LoraCallOutcome, { kind: "ok" }>): void {
  const what = `Engine ${engine.id} could not ${action} the LoRA adapter '${name}'`;
  switch (outcome.kind) {
    case "disabled":
      return sendError(res, "conflict", `Engine ${engine.id} does not load or unload LoRA adapters at runtime (its /v1/${action}_lora_adapter route answered 404): ${RUNTIME_LOADING_HINT}.`);
    case "not_found":
      return sendError(res, action === "load" ? "bad_request" : "not_found", `${what}: ${outcome.message}`);
    case "rejected":
    case "already_loaded":
      return sendError(res, "bad_request", `${what}: ${outcome.message}`);
    case "failed":
      return sendError(res, "engine_error", `${what}: ${outcome.message}`);
  }
}

/** The adapter routes' state: loads in flight, so concurrent loads of one adapter make one engine call. */
export class LoraAdapterRoutes {
  readonly #pool: EnginePool;
  readonly #log: Log;
  readonly #loading = new Map<string, Promise<{ engine: EngineRuntime; outcome: LoraCallOutcome }>>();

  constructor(pool: EnginePool, log: Log) {
    this.#pool = pool;
    this.#log = log;
  }

  /** Answers a request under ADAPTERS_PATH. */
  async handle(method: string, url: URL, body: Uint8Array, res: ServerResponse): Promise<void> {
    if (url.pathname === ADAPTERS_PATH && method === "GET") return this.#list(res);
    if (url.pathname === ADAPTERS_PATH && method === "POST") return this.#load(body, res);
    const named = url.pathname.startsWith(`${ADAPTERS_PATH}/`) ? decodeURIComponent(url.pathname.slice(ADAPTERS_PATH.length + 1)) : null;
    if (named && method === "DELETE") return this.#unload(named, url.searchParams.get("engine"), res);
    sendError(res, url.pathname === ADAPTERS_PATH || named ? "method_not_allowed" : "not_found", `No management route for ${method} ${url.pathname}.`);
  }

  #engines(): EngineRuntime[] {
    return this.#pool.engines().filter((e) => supportsLora(e.config));
  }

  #list(res: ServerResponse): void {
    const engines = this.#engines().map((e) => ({
      id: e.id,
      kind: e.config.kind,
      healthy: canTakeRequests(e),
      base_models: baseModels(e),
      adapters: e.adapters.map((a) => ({ name: a.name, base: a.base, source: a.source })),
    }));
    json(res, 200, { object: "list", engines });
  }

  async #load(raw: Uint8Array, res: ServerResponse): Promise<void> {
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.from(raw).toString("utf8"));
    } catch {
      return sendError(res, "bad_request", "The body must be JSON: {\"name\", \"source\", \"base\", \"engine\"?}.");
    }
    const body = loadBody.safeParse(parsed);
    if (!body.success) {
      const issue = body.error.issues[0];
      return sendError(res, "bad_request", `Invalid ${issue?.path.join(".") || "body"}: ${issue?.message ?? "invalid"}. Send {"name", "source", "base", "engine"?}.`);
    }
    const { name, source, base, engine: wanted } = body.data;
    const lora = this.#engines().filter((e) => wanted === undefined || e.id === wanted);
    if (lora.length === 0) {
      const exists = wanted !== undefined && this.#pool.get(wanted) !== undefined;
      return sendError(
        res,
        wanted === undefined || exists ? "conflict" : "not_found",
        wanted === undefined
          ? "No engine on this node loads LoRA adapters (only vllm and sim engines do)."
          : exists
            ? `Engine ${wanted} cannot load LoRA adapters (only vllm and sim engines do).`
            : `No engine '${wanted}' on this node.`,
      );
    }
    const serving = lora.find((e) => e.adapters.some((a) => a.name === name));
    if (serving) return json(res, 200, this.#answer(serving, name, "already_loaded"));
    if (lora.some((e) => baseModels(e).includes(name))) return sendError(res, "conflict", `'${name}' is a base model of this node, not an adapter.`);
    const candidates = lora.filter((e) => baseModels(e).includes(base)).sort((a, b) => Number(canTakeRequests(b)) - Number(canTakeRequests(a)) || compareLoad(a, b));
    const target = candidates[0];
    if (!target) return sendError(res, "conflict", `No ${wanted === undefined ? "engine" : `engine '${wanted}'`} on this node serves the base model '${base}'.`);

    let pending = this.#loading.get(name);
    if (!pending) {
      pending = loadLoraAdapter(target.config, name, source).then((outcome) => ({ engine: target, outcome }));
      this.#loading.set(name, pending);
      void pending.finally(() => this.#loading.delete(name));
    }
    const { engine, outcome } = await pending;
    if (outcome.kind === "ok" || outcome.kind === "already_loaded") {
      // Routable now; the next probe lists it from the engine itself.
      if (!engine.adapters.some((a) => a.name === name)) {
        this.#pool.addAdapter(engine.id, { name, base, source });
        this.#log("adapter_loaded", { engine: engine.id, adapter: name, base, source });
      }
      return json(res, 200, this.#answer(engine, name, outcome.kind === "ok" ? "loaded" : "already_loaded", outcome.kind === "ok" ? outcome.message : null));
    }
    this.#log("adapter_load_failed", { engine: engine.id, adapter: name, base, source, outcome: outcome.kind, status: outcome.status, error: outcome.message }, "warn");
    sendFailure(res, engine, "load", name, outcome);
  }

  async #unload(name: string, wanted: string | null, res: ServerResponse): Promise<void> {
    const serving = this.#engines().filter((e) => (wanted === null || e.id === wanted) && e.adapters.some((a) => a.name === name));
    if (serving.length === 0) return sendError(res, "not_found", `No engine${wanted === null ? "" : ` '${wanted}'`} on this node serves the LoRA adapter '${name}'.`);
    const unloaded: string[] = [];
    for (const engine of serving) {
      const outcome = await unloadLoraAdapter(engine.config, name);
      // Not loaded on the engine (it restarted, say) ends where an unload does.
      if (outcome.kind === "ok" || outcome.kind === "not_found") {
        this.#pool.removeAdapter(engine.id, name);
        this.#log("adapter_unloaded", { engine: engine.id, adapter: name });
        unloaded.push(engine.id);
        continue;
      }
      this.#log("adapter_unload_failed", { engine: engine.id, adapter: name, outcome: outcome.kind, status: outcome.status, error: outcome.message }, "warn");
      return sendFailure(res, engine, "unload", name, outcome);
    }
    json(res, 200, { object: "lora_adapter", name, status: "unloaded", engines: unloaded });
  }

  #answer(engine: EngineRuntime, name: string, status: "loaded" | "already_loaded", message: string | null = null) {
    const adapter = engine.adapters.find((a) => a.name === name);
    return { object: "lora_adapter", name, base: adapter?.base ?? null, source: adapter?.source ?? null, engine: engine.id, status, message };
  }
}
