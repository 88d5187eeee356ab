import type { SimModel } from "./options.ts";
import type { PromptInfo } from "./requests.ts";

/**
 * vLLM V1's Prometheus metrics (vllm/v1/metrics/loggers.py), counted from what the simulator
 * really did. Names, HELP texts, buckets and label order (model_name, engine[, finished_reason|le])
 * follow prometheus_client's text output as vLLM serves it.
 */

/** A Prometheus histogram with fixed upper bounds. */
export interface Histogram {
  bounds: readonly number[];
  counts: number[];
  sum: number;
  count: number;
}

/** Why a request finished, as vLLM labels request_success_total. */
export type FinishedReason = "stop" | "length" | "abort";

/** Engine state and counters of one served model. */
export interface ModelMetrics {
  model: SimModel;
  running: number;
  waiting: number;
  /** KV blocks held by running requests, and what the simulated GPU can hold. */
  kvBlocks: number;
  kvCapacityBlocks: number;
  promptTokens: number;
  generationTokens: number;
  prefixQueries: number;
  prefixHits: number;
  preemptions: number;
  success: Record<FinishedReason, number>;
  ttft: Histogram;
  interToken: Histogram;
  e2e: Histogram;
  queue: Histogram;
  prefill: Histogram;
  decode: Histogram;
  requestPromptTokens: Histogram;
  requestGenerationTokens: Histogram;
  /** Prompt-prefix hashes seen recently (a stand-in for vLLM's block hash table). */
  prefixCache: Map<number, true>;
}

/** vLLM's KV block size in tokens. */
export const KV_BLOCK_TOKENS = 16;
const PREFIX_CACHE_ENTRIES = 10_000;

const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560];
const ITL_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
const LATENCY_BUCKETS = [0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680];

/** vLLM's build_1_2_5_buckets: 1, 2, 5, 10, 20, 50, … up to max. */
function buckets125(max: number): number[] {
  const out: number[] = [];
  for (let exponent = 1; ; exponent *= 10) {
    for (const mantissa of [1, 2, 5]) {
      const value = mantissa * exponent;
      if (value > max) return out;
      out.push(value);
    }
  }
}

function histogram(bounds: readonly number[]): Histogram {
  return { bounds, counts: new Array<number>(bounds.length).fill(0), sum: 0, count: 0 };
}

/** Records one observation. */
export function observe(h: Histogram, value: number): void {
  h.sum += value;
  h.count++;
  for (let i = 0; i < h.bounds.length; i++) {
    if (value <= (h.bounds[i] ?? Infinity)) {
      h.counts[i] = (h.counts[i] ?? 0) + 1;
      return;
    }
  }
}

/** Fresh metrics for a model; KV capacity lets every concurrent slot hold a full context. */
export function createModelMetrics(model: SimModel, maxConcurrency: number): ModelMetrics {
  const tokenBuckets = buckets125(model.maxModelLen);
  return {
    model,
    running: 0,
    waiting: 0,
    kvBlocks: 0,
    kvCapacityBlocks: maxConcurrency * Math.ceil(model.maxModelLen / KV_BLOCK_TOKENS),
    promptTokens: 0,
    generationTokens: 0,
    prefixQueries: 0,
    prefixHits: 0,
    preemptions: 0,
    success: { stop: 0, length: 0, abort: 0 },
    ttft: histogram(TTFT_BUCKETS),
    interToken: histogram(ITL_BUCKETS),
    e2e: histogram(LATENCY_BUCKETS),
    queue: histogram(LATENCY_BUCKETS),
    prefill: histogram(LATENCY_BUCKETS),
    decode: histogram(LATENCY_BUCKETS),
    requestPromptTokens: histogram(tokenBuckets),
    requestGenerationTokens: histogram(tokenBuckets),
    prefixCache: new Map(),
  };
}

/**
 * Counts a prefix-cache lookup like vLLM's (in tokens): the longest previously seen prompt prefix
 * (whole chat messages, or the whole completion prompt) is a hit, rounded down to full KV blocks
 * and leaving at least one token to compute. Then remembers this prompt's prefixes.
 */
export function queryPrefixCache(m: ModelMetrics, prompt: PromptInfo): number {
  let hit = 0;
  for (let k = prompt.prefixHashes.length - 1; k >= 0; k--) {
    if (m.prefixCache.has(prompt.prefixHashes[k] ?? 0)) {
      hit = prompt.prefixTokens[k] ?? 0;
      break;
    }
  }
  hit = Math.min(Math.floor(hit / KV_BLOCK_TOKENS) * KV_BLOCK_TOKENS, Math.max(0, prompt.tokens - 1));
  m.prefixQueries += prompt.tokens;
  m.prefixHits += hit;
  for (const hash of prompt.prefixHashes) {
    m.prefixCache.delete(hash);
    m.prefixCache.set(hash, true);
  }
  while (m.prefixCache.size > PREFIX_CACHE_ENTRIES) {
    const oldest = m.prefixCache.keys().next();
    if (oldest.done === true) break;
    m.prefixCache.delete(oldest.value);
  }
  return hit;
}

/** A float as Python's repr prints it (prometheus_client's floatToGoString). */
export function pyFloat(value: number): string {
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  if (Number.isNaN(value)) return "NaN";
  const abs = Math.abs(value);
  if (Number.isInteger(value) && abs < 1e16) return value.toFixed(1);
  if (abs !== 0 && (abs < 1e-4 || abs >= 1e16)) {
    return value.toExponential().replace(/e([+-])(\d)$/, "e$10$2");
  }
  return String(value);
}

function labelValue(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

type Family =
  | { kind: "gauge" | "counter"; name: string; help: string; value: (m: ModelMetrics) => number }
  | { kind: "histogram"; name: string; help: string; pick: (m: ModelMetrics) => Histogram };

const kvUsage = (m: ModelMetrics): number => Math.min(1, m.kvBlocks / m.kvCapacityBlocks);

const FAMILIES: Family[] = [
  { kind: "gauge", name: "vllm:num_requests_running", help: "Number of requests in model execution batches.", value: (m) => m.running },
  { kind: "gauge", name: "vllm:num_requests_waiting", help: "Number of requests waiting to be processed.", value: (m) => m.waiting },
  {
    kind: "gauge",
    name: "vllm:gpu_cache_usage_perc",
    help: "GPU KV-cache usage. 1 means 100 percent usage.DEPRECATED: Use vllm:kv_cache_usage_perc instead.",
    value: kvUsage,
  },
  { kind: "gauge", name: "vllm:kv_cache_usage_perc", help: "KV-cache usage. 1 means 100 percent usage.", value: kvUsage },
  { kind: "counter", name: "vllm:prefix_cache_queries", help: "Prefix cache queries, in terms of number of queried tokens.", value: (m) => m.prefixQueries },
  { kind: "counter", name: "vllm:prefix_cache_hits", help: "Prefix cache hits, in terms of number of cached tokens.", value: (m) => m.prefixHits },
  { kind: "counter", name: "vllm:num_preemptions", help: "Cumulative number of preemption from the engine.", value: (m) => m.preemptions },
  { kind: "counter", name: "vllm:prompt_tokens", help: "Number of prefill tokens processed.", value: (m) => m.promptTokens },
  { kind: "counter", name: "vllm:generation_tokens", help: "Number of generation tokens processed.", value: (m) => m.generationTokens },
  { kind: "histogram", name: "vllm:request_prompt_tokens", help: "Number of prefill tokens processed.", pick: (m) => m.requestPromptTokens },
  { kind: "histogram", name: "vllm:request_generation_tokens", help: "Number of generation tokens processed.", pick: (m) => m.requestGenerationTokens },
  { kind: "histogram", name: "vllm:time_to_first_token_seconds", help: "Histogram of time to first token in seconds.", pick: (m) => m.ttft },
  { kind: "histogram", name: "vllm:inter_token_latency_seconds", help: "Histogram of inter-token latency in seconds.", pick: (m) => m.interToken },
  { kind: "histogram", name: "vllm:e2e_request_latency_seconds", help: "Histogram of e2e request latency in seconds.", pick: (m) => m.e2e },
  { kind: "histogram", name: "vllm:request_queue_time_seconds", help: "Histogram of time spent in WAITING phase for request.", pick: (m) => m.queue },
  { kind: "histogram", name: "vllm:request_prefill_time_seconds", help: "Histogram of time spent in PREFILL phase for request.", pick: (m) => m.prefill },
  { kind: "histogram", name: "vllm:request_decode_time_seconds", help: "Histogram of time spent in DECODE phase for request.", pick: (m) => m.decode },
];

/** The /metrics body (Prometheus text format 0.0.4). */
export function renderMetrics(models: readonly ModelMetrics[]): string {
  const out: string[] = [];
  const labels = models.map((m) => `model_name="${labelValue(m.model.name)}",engine="0"`);
  for (const family of FAMILIES) {
    const name = family.kind === "counter" ? `${family.name}_total` : family.name;
    out.push(`# HELP ${name} ${family.help}`, `# TYPE ${name} ${family.kind}`);
    models.forEach((m, i) => {
      const l = labels[i] ?? "";
      if (family.kind !== "histogram") {
        out.push(`${name}{${l}} ${pyFloat(family.value(m))}`);
        return;
      }
      const h = family.pick(m);
      let cumulative = 0;
      h.bounds.forEach((bound, b) => {
        cumulative += h.counts[b] ?? 0;
        out.push(`${name}_bucket{${l},le="${pyFloat(bound)}"} ${pyFloat(cumulative)}`);
      });
      out.push(`${name}_bucket{${l},le="+Inf"} ${pyFloat(h.count)}`, `${name}_count{${l}} ${pyFloat(h.count)}`, `${name}_sum{${l}} ${pyFloat(h.sum)}`);
    });
    if (family.name === "vllm:generation_tokens") {
      // request_success is one family with a third label, so it is written here, in vLLM's order.
      out.push("# HELP vllm:request_success_total Count of successfully processed requests.", "# TYPE vllm:request_success_total counter");
      models.forEach((m, i) => {
        for (const reason of ["stop", "length", "abort"] as const) {
          out.push(`vllm:request_success_total{${labels[i] ?? ""},finished_reason="${reason}"} ${pyFloat(m.success[reason])}`);
        }
      });
    }
  }
  return `${out.join("\n")}\n`;
}
