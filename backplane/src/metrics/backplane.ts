import type { EnginePool } from "../engines/pool.ts";
import { Counter, Gauge, Histogram, LATENCY_BUCKETS, Registry } from "./registry.ts";
import type { GpuSampler } from "./gpu.ts";
import type { GpuInfo } from "../../../schema/contracts/system-resources.ts";

/** The backplane's own metrics, served at GET /metrics with the engines' load gauges. */
export interface BackplaneMetrics {
  registry: Registry;
  requests: Counter;
  errors: Counter;
  retries: Counter;
  shed: Counter;
  latency: Histogram;
  firstByte: Histogram;
  heartbeats: Counter;
  streamReports: Counter;
}

const CIRCUIT = { closed: 0, half_open: 1, open: 2 } as const;

/** Creates the registry; gauges read the pool when /metrics is scraped. */
export function createBackplaneMetrics(pool: EnginePool, isDraining: () => boolean, gpus: GpuSampler | null = null): BackplaneMetrics {
  const registry = new Registry();
  const perEngine = (read: (r: ReturnType<EnginePool["reports"]>[number]) => number | null) => () =>
    pool.reports().flatMap((r) => {
      const value = read(r);
      return value === null ? [] : [{ labels: { engine: r.id, kind: r.kind }, value }];
    });
  const metrics: BackplaneMetrics = {
    registry,
    requests: registry.add(new Counter("switchyard_backplane_requests_total", "Inference requests by engine and outcome (ok, client_error, failed_mid_stream, cancelled, profile_timeout, unavailable).")),
    errors: registry.add(new Counter("switchyard_backplane_engine_errors_total", "Engine failures seen by the backplane, by engine and reason.")),
    retries: registry.add(new Counter("switchyard_backplane_retries_total", "Retries of requests that failed before their first byte (other_engine, backoff).")),
    shed: registry.add(new Counter("switchyard_backplane_shed_total", "Requests answered 503 at once (queue_full, draining).")),
    latency: registry.add(new Histogram("switchyard_backplane_request_duration_seconds", "Time from accepting a request to the end of its answer.", LATENCY_BUCKETS)),
    firstByte: registry.add(new Histogram("switchyard_backplane_first_byte_seconds", "Time from accepting a request to the engine's first byte.", LATENCY_BUCKETS)),
    heartbeats: registry.add(new Counter("switchyard_backplane_heartbeats_total", "Heartbeats sent to the gateway, by result (ok, failed).")),
    streamReports: registry.add(new Counter("switchyard_backplane_stream_reports_total", "Stream reports by event (issued, refused when the store is full, taken by the gateway, expired untaken).")),
  };
  registry.add(new Gauge("switchyard_backplane_in_flight", "Requests running on each engine through the backplane.", perEngine((r) => r.inFlight)));
  registry.add(new Gauge("switchyard_backplane_queued", "Requests waiting for a slot on each engine.", perEngine((r) => r.queued)));
  registry.add(new Gauge("switchyard_backplane_max_concurrency", "Concurrency cap of each engine.", perEngine((r) => r.maxConcurrency)));
  registry.add(new Gauge("switchyard_engine_healthy", "1 when the engine's last health probe passed.", perEngine((r) => (r.healthy ? 1 : 0))));
  registry.add(new Gauge("switchyard_engine_circuit_state", "Circuit breaker: 0 closed, 1 half-open, 2 open.", perEngine((r) => CIRCUIT[r.circuit])));
  registry.add(new Gauge("switchyard_engine_requests_running", "Engine-reported running requests (vllm:num_requests_running).", perEngine((r) => r.running)));
  registry.add(new Gauge("switchyard_engine_requests_waiting", "Engine-reported waiting requests (vllm:num_requests_waiting).", perEngine((r) => r.waiting)));
  registry.add(new Gauge("switchyard_engine_kv_cache_usage_ratio", "Engine KV cache use, 0-1.", perEngine((r) => r.kvCacheUsage)));
  registry.add(new Gauge("switchyard_engine_recent_ttft_seconds", "Mean time to first token over the last scrape interval.", perEngine((r) => (r.recentTtftMs === null ? null : r.recentTtftMs / 1000))));
  // The engine's own lifetime counters, passed on as counters (they restart from 0 with the engine).
  registry.add(new Gauge("switchyard_engine_prompt_tokens_total", "Engine lifetime prompt tokens (vllm:prompt_tokens_total).", perEngine((r) => r.promptTokensTotal), "counter"));
  registry.add(new Gauge("switchyard_engine_generation_tokens_total", "Engine lifetime generated tokens (vllm:generation_tokens_total).", perEngine((r) => r.generationTokensTotal), "counter"));
  const perGpu = (read: (g: GpuInfo) => number | null) => () =>
    (gpus?.current() ?? []).flatMap((g) => {
      const value = read(g);
      return value === null ? [] : [{ labels: { gpu: String(g.index), name: g.name }, value }];
    });
  registry.add(new Gauge("switchyard_gpu_utilization_ratio", "GPU busy time, 0-1, as nvidia-smi reports it (sampled at most every 10 s).", perGpu((g) => (g.utilizationPct === null ? null : g.utilizationPct / 100))));
  registry.add(new Gauge("switchyard_gpu_memory_used_bytes", "GPU memory in use, as nvidia-smi reports it.", perGpu((g) => g.memoryUsedBytes)));
  registry.add(new Gauge("switchyard_gpu_memory_total_bytes", "GPU memory in all, as nvidia-smi reports it.", perGpu((g) => g.memoryTotalBytes)));
  registry.add(new Gauge("switchyard_backplane_draining", "1 while the node drains.", () => [{ labels: {}, value: isDraining() ? 1 : 0 }]));
  return metrics;
}
