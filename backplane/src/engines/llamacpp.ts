import type { EngineConfig } from "../config.ts";
import { describeError, EngineHttpError, engineGet, engineGetJson, modelIdsFromList } from "./http.ts";
import { type PromSample, parsePrometheus, sumMetric } from "./prometheus.ts";
import type { EngineAdapter, EngineLoad, ProbeResult } from "./types.ts";

/**
 * llama.cpp's `llama-server` (tools/server). One process serves one model, so no series carries a
 * model label. What it exposes, and the quirks this adapter works around:
 *
 * - `/health` answers 503 `{"error":{"message":"Loading model",…}}` until the model is loaded (its
 *   pre-routing middleware answers every path that way), then 200 `{"status":"ok"}`.
 * - `/metrics` exists only with `--metrics`; without it the route answers 501 `not_supported_error`.
 *   Counters are lifetime totals; `prompt_tokens_total` leaves out prompt tokens reused from the
 *   cache, which `prompt_tokens_cached_total` counts. Values are written with C++'s default stream
 *   precision (6 significant digits), so a counter above 999 999 reads rounded, e.g. `1.23457e+06`.
 * - `/slots` is on by default (`--no-slots` turns it off, 501). Unlike `/metrics`, `/health` and
 *   `/v1/models`, it is a task that resets the `--sleep-idle-seconds` timer and wakes a sleeping server.
 */

/** Prometheus names llama-server writes in `server_task_result_metrics::to_metrics()`. */
export const LLAMACPP_METRICS = {
  running: "llamacpp:requests_processing",
  waiting: "llamacpp:requests_deferred",
  promptTokens: "llamacpp:prompt_tokens_total",
  promptTokensCached: "llamacpp:prompt_tokens_cached_total",
  generationTokens: "llamacpp:tokens_predicted_total",
} as const;

/** What `/slots` tells about load. */
export interface SlotsLoad {
  /** Slots with `is_processing`. */
  running: number;
  /** The fullest busy slot's context use (0 when none is busy); null when no busy slot reports its size. */
  kvCacheUsage: number | null;
}

/**
 * Load from a parsed llama-server /metrics page. The prompt counter adds the cached prompt tokens
 * back, so it counts what `usage.prompt_tokens` reports (cached tokens included), as vLLM's does:
 * reconciliation compares it with the metered tokens. Builds without the cached counter give the
 * processed tokens only.
 */
export function llamacppLoadFromSamples(samples: readonly PromSample[]): Pick<EngineLoad, "running" | "waiting" | "promptTokensTotal" | "generationTokensTotal"> {
  const processed = sumMetric(samples, LLAMACPP_METRICS.promptTokens);
  const cached = sumMetric(samples, LLAMACPP_METRICS.promptTokensCached);
  return {
    running: sumMetric(samples, LLAMACPP_METRICS.running),
    waiting: sumMetric(samples, LLAMACPP_METRICS.waiting),
    promptTokensTotal: processed === null ? null : processed + (cached ?? 0),
    generationTokensTotal: sumMetric(samples, LLAMACPP_METRICS.generationTokens),
  };
}

/**
 * Load from a `/slots` list (`server_slot::to_json`). A slot's `n_prompt_tokens` is the size of its
 * token list, generated tokens included, i.e. how much of its `n_ctx` it fills. Only busy slots
 * count: an idle slot keeps its last prompt only for reuse, and gives the cells up to its next task
 * (or, in a shared pool, to any slot that needs them). The fullest busy slot is reported because
 * llama-server does not say whether its KV cache is one shared pool (`--kv-unified`, the default
 * when `-np` is left to auto; each slot's `n_ctx` is then the whole pool) or split into per-slot
 * parts, so no sum over slots is right for both.
 */
export function llamacppLoadFromSlots(body: unknown): SlotsLoad {
  if (!Array.isArray(body)) throw new EngineHttpError("GET /slots did not return a list of slots");
  let running = 0;
  let fullest: number | null = null;
  for (const entry of body as unknown[]) {
    if (typeof entry !== "object" || entry === null) continue;
    const slot = entry as { is_processing?: unknown; n_ctx?: unknown; n_prompt_tokens?: unknown };
    if (slot.is_processing !== true) continue;
    running++;
    if (typeof slot.n_ctx !== "number" || slot.n_ctx <= 0 || typeof slot.n_prompt_tokens !== "number") continue;
    fullest = Math.max(fullest ?? 0, Math.min(1, Math.max(0, slot.n_prompt_tokens / slot.n_ctx)));
  }
  return { running, kvCacheUsage: running === 0 ? 0 : fullest };
}

/** `data[].id` of llama-server's `/v1/models`, then the `--alias` names it lists in `data[].aliases`. */
export function llamacppModelNames(body: unknown): string[] {
  const names = modelIdsFromList(body);
  const data = (body as { data: unknown[] }).data;
  for (const entry of data) {
    const aliases = typeof entry === "object" && entry !== null ? (entry as { aliases?: unknown }).aliases : undefined;
    if (!Array.isArray(aliases)) continue;
    for (const alias of aliases as unknown[]) {
      if (typeof alias === "string" && alias !== "" && !names.includes(alias)) names.push(alias);
    }
  }
  return names;
}

/** The `error.message` of an OpenAI-style error body, when there is one. */
async function errorMessage(res: Response): Promise<string | null> {
  try {
    const body = (await res.json()) as { error?: { message?: unknown } } | null;
    const message = body?.error?.message;
    return typeof message === "string" && message !== "" ? message : null;
  } catch {
    return null;
  }
}

// /metrics without --metrics answers 501; 404 is a build or proxy without the route at all.
const absent = (status: number) => status === 404 || status === 501;

/** Adapter for llama-server: `/health` for liveness, `/v1/models` for names, `/metrics` (else `/slots`) for load. */
export function createLlamacppAdapter(config: EngineConfig, timeoutMs: number): EngineAdapter {
  async function probe(signal: AbortSignal): Promise<ProbeResult> {
    const started = performance.now();
    const elapsed = () => Math.round(performance.now() - started);
    try {
      const health = await engineGet(config, "/health", signal, timeoutMs);
      if (!health.ok) {
        // "Loading model" while the weights load; worth showing as is in logs and heartbeats.
        const message = await errorMessage(health);
        throw new EngineHttpError(`GET /health answered ${health.status}${message === null ? "" : ` (${message})`}`, health.status);
      }
      await health.body?.cancel();
      // /health is public even with --api-key; /v1/models is not, so a wrong key shows up here.
      const models = llamacppModelNames(await engineGetJson(config, "/v1/models", signal, timeoutMs));
      return { healthy: true, latencyMs: elapsed(), error: null, models };
    } catch (err) {
      return { healthy: false, latencyMs: elapsed(), error: describeError(err, timeoutMs), models: null };
    }
  }

  async function slots(signal: AbortSignal): Promise<SlotsLoad> {
    return llamacppLoadFromSlots(await engineGetJson(config, "/slots", signal, timeoutMs));
  }

  async function scrapeLoad(signal: AbortSignal): Promise<EngineLoad> {
    const res = await engineGet(config, "/metrics", signal, timeoutMs);
    if (res.ok) {
      const load = llamacppLoadFromSamples(parsePrometheus(await res.text()));
      // No slot busy means no context in use, and /slots is not asked: it would reset the engine's
      // idle-sleep timer on every scrape. While requests run the engine is awake anyway.
      let kvCacheUsage: number | null = 0;
      if (load.running === null || load.running > 0 || (load.waiting ?? 0) > 0) {
        // KV use is secondary: without /slots (--no-slots) the counters still stand.
        kvCacheUsage = await slots(signal).then(
          (s) => s.kvCacheUsage,
          () => null,
        );
      }
      return { ...load, kvCacheUsage, recentTtftMs: null };
    }
    await res.body?.cancel();
    if (!absent(res.status)) throw new EngineHttpError(`GET /metrics answered ${res.status}`, res.status);
    // Without --metrics: the busy slots from /slots; queue and lifetime token counters are unknown.
    try {
      const fallback = await slots(signal);
      return { running: fallback.running, waiting: null, kvCacheUsage: fallback.kvCacheUsage, recentTtftMs: null, promptTokensTotal: null, generationTokensTotal: null };
    } catch (err) {
      if (err instanceof EngineHttpError && err.status !== null && absent(err.status)) {
        throw new EngineHttpError(`llama-server exposes no load: GET /metrics answered ${res.status} and GET /slots ${err.status} (start it with --metrics)`, err.status);
      }
      throw err;
    }
  }

  return { config, probe, scrapeLoad };
}
