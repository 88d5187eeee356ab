import type { EngineConfig } from "../config.ts";
import { describeError, EngineHttpError, engineGet, engineGetJson, loraAdaptersFromList, modelIdsFromList } from "./http.ts";
import { type LabelMatch, maxMetric, type PromSample, parsePrometheus, sumMetric } from "./prometheus.ts";
import type { EngineAdapter, EngineLoad, ProbeResult } from "./types.ts";

/** TTFT histogram totals kept between scrapes to turn lifetime counters into a recent mean. */
interface TtftTotals {
  sum: number;
  count: number;
}

/**
 * Which series belong to this engine: its models (configured, else discovered) when the engine
 * labels them with model_name. If none of them appears (a served-model-name alias, or an engine
 * without the label) every series counts, since one vLLM process serves one model anyway.
 */
function scopeOf(samples: readonly PromSample[], models: readonly string[]): LabelMatch | undefined {
  if (models.length === 0) return undefined;
  const labelled = samples.some((s) => s.name === "vllm:num_requests_running" && s.labels.model_name !== undefined && models.includes(s.labels.model_name));
  return labelled ? { model_name: models } : undefined;
}

/** Reads the load signals from a parsed vLLM /metrics page; `previous` carries the TTFT totals between calls. */
export function vllmLoadFromSamples(samples: readonly PromSample[], models: readonly string[], previous: TtftTotals | null): { load: EngineLoad; ttft: TtftTotals | null } {
  const scope = scopeOf(samples, models);
  // Data-parallel vLLM exposes one series per `engine` label: queue gauges add up across engines,
  // while KV use is per engine's own cache, so the fullest one is what a new request risks.
  const kv = maxMetric(samples, "vllm:kv_cache_usage_perc", scope) ?? maxMetric(samples, "vllm:gpu_cache_usage_perc", scope);
  const sum = sumMetric(samples, "vllm:time_to_first_token_seconds_sum", scope);
  const count = sumMetric(samples, "vllm:time_to_first_token_seconds_count", scope);
  const ttft = sum === null || count === null ? null : { sum, count };
  let recentTtftMs: number | null = null;
  // A drop in the counters means the engine restarted: start a new baseline instead of a negative mean.
  if (ttft !== null && previous !== null && ttft.count > previous.count && ttft.sum >= previous.sum) {
    recentTtftMs = ((ttft.sum - previous.sum) / (ttft.count - previous.count)) * 1000;
  }
  return {
    load: {
      running: sumMetric(samples, "vllm:num_requests_running", scope),
      waiting: sumMetric(samples, "vllm:num_requests_waiting", scope),
      kvCacheUsage: kv === null ? null : Math.min(1, Math.max(0, kv)),
      recentTtftMs,
      promptTokensTotal: sumMetric(samples, "vllm:prompt_tokens_total", scope),
      generationTokensTotal: sumMetric(samples, "vllm:generation_tokens_total", scope),
    },
    ttft,
  };
}

/** Adapter for vLLM (and the simulator): `/health` for liveness, `/v1/models` for names, `/metrics` for load. */
export function createVllmAdapter(config: EngineConfig, timeoutMs: number): EngineAdapter {
  let discovered: string[] = [];
  let ttftTotals: TtftTotals | null = null;

  async function probe(signal: AbortSignal): Promise<ProbeResult> {
    const started = performance.now();
    const elapsed = () => Math.round(performance.now() - started);
    try {
      // vLLM answers /health 503 once the engine core died; during warm-up nothing listens yet.
      const health = await engineGet(config, "/health", signal, timeoutMs);
      await health.body?.cancel();
      if (!health.ok) throw new EngineHttpError(`GET /health answered ${health.status}`, health.status);
      // /v1/models needs the api key, so a wrong key shows up here rather than on every request.
      const list = await engineGetJson(config, "/v1/models", signal, timeoutMs);
      const models = modelIdsFromList(list);
      discovered = models;
      return { healthy: true, latencyMs: elapsed(), error: null, models, adapters: loraAdaptersFromList(list) };
    } catch (err) {
      return { healthy: false, latencyMs: elapsed(), error: describeError(err, timeoutMs), models: null };
    }
  }

  async function scrapeLoad(signal: AbortSignal): Promise<EngineLoad> {
    const res = await engineGet(config, "/metrics", signal, timeoutMs);
    if (!res.ok) {
      await res.body?.cancel();
      throw new EngineHttpError(`GET /metrics answered ${res.status}`, res.status);
    }
    const samples = parsePrometheus(await res.text());
    const { load, ttft } = vllmLoadFromSamples(samples, config.models.length > 0 ? config.models : discovered, ttftTotals);
    ttftTotals = ttft;
    return load;
  }

  return { config, probe, scrapeLoad };
}
