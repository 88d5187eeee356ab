import { z } from "zod";

/**
 * Backplane → gateway messages, signed with the node's secret (signing.ts) and sent to
 * `POST /internal/nodes/heartbeat` and `POST /internal/nodes/spot`.
 */

/** Path of the heartbeat route on the gateway. */
export const HEARTBEAT_PATH = "/internal/nodes/heartbeat";
/** Path of the spot-notice route on the gateway. */
export const SPOT_PATH = "/internal/nodes/spot";
/** Path of the probe route: `backplane doctor` checks its secret there; the gateway only verifies the signature. */
export const PROBE_PATH = "/internal/nodes/probe";

/** A node's overall status. */
export const nodeStatusSchema = z.enum(["ready", "degraded", "draining", "unhealthy"]);
/** A node's overall status. */
export type NodeStatus = z.infer<typeof nodeStatusSchema>;

const count = z.number().int().min(0);

/** A LoRA adapter an engine serves: its name (what requests put in `model`) and its base model. */
export const loraAdapterSchema = z.object({
  name: z.string().min(1).max(256),
  base: z.string().min(1).max(256),
});
/** A LoRA adapter an engine serves. */
export type LoraAdapterReport = z.infer<typeof loraAdapterSchema>;

/** Load of one engine as the backplane sees it. Engine-reported values are null when the engine does not expose them. */
export const engineReportSchema = z.object({
  id: z.string().min(1).max(64),
  kind: z.enum(["vllm", "openai", "ollama", "sim", "llamacpp"]),
  models: z.array(z.string().min(1).max(256)).max(256),
  healthy: z.boolean(),
  circuit: z.enum(["closed", "open", "half_open"]),
  /** Requests the backplane has running on the engine, and waiting for a slot. */
  inFlight: count,
  queued: count,
  maxConcurrency: count,
  /** vllm:num_requests_running / num_requests_waiting. */
  running: count.nullable(),
  waiting: count.nullable(),
  /** vllm:kv_cache_usage_perc (0–1). */
  kvCacheUsage: z.number().min(0).max(1).nullable(),
  /** Mean time to first token over the last scrape interval, from vLLM's histogram. */
  recentTtftMs: z.number().min(0).nullable(),
  /** vllm:prompt_tokens_total / generation_tokens_total (engine lifetime counters). */
  promptTokensTotal: z.number().min(0).nullable(),
  generationTokensTotal: z.number().min(0).nullable(),
  /**
   * LoRA adapters the engine serves (vLLM and the simulator; their names are also in `models`).
   * Optional both ways: older backplanes leave it out, and older gateways drop it (a plain
   * z.object ignores keys it does not know).
   */
  adapters: z.array(loraAdapterSchema).max(256).optional(),
});
/** Load of one engine. */
export type EngineReport = z.infer<typeof engineReportSchema>;

/** One heartbeat. */
export const heartbeatSchema = z.object({
  nodeId: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/),
  region: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/),
  url: z.url({ protocol: /^https?$/ }),
  status: nodeStatusSchema,
  /** Union of the models of the engines that can take requests. */
  models: z.array(z.string().min(1).max(256)).max(1024),
  /** The backplane's heartbeat period; the gateway marks the node stale after three missed beats. */
  intervalMs: z.number().int().min(100).max(600_000),
  /** Unix ms on the backplane's clock. */
  sentAt: z.number().int().min(0),
  engines: z.array(engineReportSchema).max(64),
});
/** One heartbeat. */
export type Heartbeat = z.infer<typeof heartbeatSchema>;

/** A spot / preemption notice: the node is going away at `deadline`. */
export const spotNoticeSchema = z.object({
  nodeId: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/),
  provider: z.enum(["aws", "gcp", "azure"]),
  /** What the cloud said: terminate, stop, hibernate, preempt, rebalance… */
  action: z.string().min(1).max(64),
  /** ISO time when the host goes away, when the cloud said. */
  deadline: z.iso.datetime({ offset: true }).nullable(),
  noticedAt: z.iso.datetime({ offset: true }),
  /** The cloud's payload, for the record. */
  detail: z.record(z.string(), z.unknown()),
});
/** A spot notice. */
export type SpotNotice = z.infer<typeof spotNoticeSchema>;
