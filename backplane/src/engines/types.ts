import type { EngineConfig } from "../config.ts";
import type { LoraAdapter } from "./http.ts";

/** What one health probe learned. */
export interface ProbeResult {
  healthy: boolean;
  latencyMs: number;
  error: string | null;
  /** Models the engine reports serving (null when the probe does not list them). */
  models: string[] | null;
  /** LoRA adapters among `models` (vLLM and the simulator; absent for engines without them). */
  adapters?: LoraAdapter[];
}

/** Load signals scraped from the engine; null where the engine does not expose them. */
export interface EngineLoad {
  running: number | null;
  waiting: number | null;
  /** 0–1. vllm:kv_cache_usage_perc, falling back to vllm:gpu_cache_usage_perc; llama-server: its fullest busy slot (llamacpp.ts). */
  kvCacheUsage: number | null;
  /** Mean TTFT (ms) over the requests finished since the previous scrape (from the histogram's _sum/_count deltas). */
  recentTtftMs: number | null;
  promptTokensTotal: number | null;
  generationTokensTotal: number | null;
}

/** How the backplane talks to one kind of engine. */
export interface EngineAdapter {
  readonly config: EngineConfig;
  /** Health probe: vLLM/sim/llamacpp `GET /health`; openai `GET /v1/models`; ollama `GET /api/version`. */
  probe(signal: AbortSignal): Promise<ProbeResult>;
  /** Load scrape; engines without metrics return all nulls. */
  scrapeLoad(signal: AbortSignal): Promise<EngineLoad>;
}
