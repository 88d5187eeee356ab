import type { EngineConfig } from "../config.ts";
import { DEFAULT_ENGINE_TIMEOUT_MS, describeError, EngineHttpError, engineGet, engineGetJson, modelIdsFromList } from "./http.ts";
import { createLlamacppAdapter } from "./llamacpp.ts";
import type { EngineAdapter, EngineLoad, ProbeResult } from "./types.ts";
import { createVllmAdapter } from "./vllm.ts";

/** Load of an engine that exposes no metrics. */
export const NO_LOAD: Readonly<EngineLoad> = Object.freeze({
  running: null,
  waiting: null,
  kvCacheUsage: null,
  recentTtftMs: null,
  promptTokensTotal: null,
  generationTokensTotal: null,
});

/** Options shared by every adapter. */
export interface AdapterOptions {
  /** Time the engine has to answer one probe step or scrape (default 5000 ms). */
  timeoutMs?: number;
}

async function timed(timeoutMs: number, run: () => Promise<string[]>): Promise<ProbeResult> {
  const started = performance.now();
  try {
    const models = await run();
    return { healthy: true, latencyMs: Math.round(performance.now() - started), error: null, models };
  } catch (err) {
    return { healthy: false, latencyMs: Math.round(performance.now() - started), error: describeError(err, timeoutMs), models: null };
  }
}

/** Any OpenAI-compatible server: a 200 from `/v1/models` with a `data` list is the only health signal there is. */
function createOpenAIAdapter(config: EngineConfig, timeoutMs: number): EngineAdapter {
  return {
    config,
    probe: (signal) => timed(timeoutMs, async () => modelIdsFromList(await engineGetJson(config, "/v1/models", signal, timeoutMs))),
    scrapeLoad: () => Promise.resolve({ ...NO_LOAD }),
  };
}

/** `models[].name` of Ollama's `/api/tags` (names carry the tag, e.g. `llama3.2:3b`, as `/v1` expects them). */
function ollamaTagNames(body: unknown): string[] {
  const models = typeof body === "object" && body !== null ? (body as { models?: unknown }).models : undefined;
  if (!Array.isArray(models)) throw new EngineHttpError("GET /api/tags did not return a `models` list");
  const names: string[] = [];
  for (const entry of models as unknown[]) {
    const name = typeof entry === "object" && entry !== null ? (entry as { name?: unknown }).name : undefined;
    if (typeof name === "string" && name !== "") names.push(name);
  }
  return names;
}

/**
 * Ollama: `/api/version` for liveness (`/` on builds without it), `/api/tags` for models.
 * Load stays null: `/api/ps` lists models loaded in memory, not requests running, so counting it
 * as `running` would make an idle Ollama look busy.
 */
function createOllamaAdapter(config: EngineConfig, timeoutMs: number): EngineAdapter {
  async function alive(signal: AbortSignal): Promise<void> {
    const version = await engineGet(config, "/api/version", signal, timeoutMs);
    await version.body?.cancel();
    if (version.ok) return;
    if (version.status !== 404) throw new EngineHttpError(`GET /api/version answered ${version.status}`, version.status);
    const root = await engineGet(config, "/", signal, timeoutMs);
    await root.body?.cancel();
    if (!root.ok) throw new EngineHttpError(`GET / answered ${root.status}`, root.status);
  }
  return {
    config,
    probe: (signal) =>
      timed(timeoutMs, async () => {
        await alive(signal);
        return ollamaTagNames(await engineGetJson(config, "/api/tags", signal, timeoutMs));
      }),
    scrapeLoad: () => Promise.resolve({ ...NO_LOAD }),
  };
}

/** Whether the pool should scrape this kind's load (vLLM-style engines and llama-server expose it). */
export function hasLoadMetrics(config: EngineConfig): boolean {
  return config.kind === "vllm" || config.kind === "sim" || config.kind === "llamacpp";
}

/** The adapter for an engine's kind. */
export function createAdapter(config: EngineConfig, opts: AdapterOptions = {}): EngineAdapter {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_ENGINE_TIMEOUT_MS;
  switch (config.kind) {
    case "vllm":
    case "sim":
      return createVllmAdapter(config, timeoutMs);
    case "llamacpp":
      return createLlamacppAdapter(config, timeoutMs);
    case "openai":
      return createOpenAIAdapter(config, timeoutMs);
    case "ollama":
      return createOllamaAdapter(config, timeoutMs);
  }
}
