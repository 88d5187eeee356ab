import type { Heartbeat, LoraAdapterReport, NodeStatus } from "../../../schema/contracts/heartbeat.ts";
import type { EngineTokenCounters } from "../../../schema/tables/index.ts";

/** One engine's load, as the node's last heartbeat reported it. */
export interface LiveEngine {
  id: string;
  kind: string;
  healthy: boolean;
  circuit: string;
  inFlight: number;
  maxConcurrency: number;
  running: number | null;
  waiting: number | null;
  kvCacheUsage: number | null;
  recentTtftMs: number | null;
}

/** What the gateway keeps in Redis about a node from its last heartbeat. */
export interface LiveNode {
  status: NodeStatus;
  /** Gateway clock (unix ms) when the heartbeat arrived: staleness never depends on the node's clock. */
  at: number;
  intervalMs: number;
  models: string[];
  /** Sum over engines of the backplane's in-flight requests, and of their concurrency caps. */
  inFlight: number;
  capacity: number;
  /** Max over engines of vLLM's waiting queue and KV cache use (null when no engine reports them). */
  waiting: number | null;
  kvCacheUsage: number | null;
  /** Sum over engines of vLLM's running requests (absent in entries written before routing used it). */
  running?: number | null;
  /** Mean over engines of the recent time to first token the engines report. */
  recentTtftMs?: number | null;
  /** Exponentially weighted moving average of recentTtftMs across heartbeats (the `latency` strategy). */
  ttftEwmaMs?: number | null;
  /** Per-engine load (for operators; routing uses the node-level summary above). */
  engines?: LiveEngine[];
  /**
   * Lifetime token counters per engine id, for the engines that report both (vLLM's
   * prompt_tokens_total / generation_tokens_total); read by the reconciliation job. Entries written
   * before this field existed have none: read them with `liveCounters`.
   */
  counters?: Record<string, EngineTokenCounters>;
  /**
   * LoRA adapters the node's engines serve (name → base), one entry per name. Absent when no engine
   * reported any (older backplanes, engines without LoRA); their names are in `models` as well.
   */
  adapters?: LoraAdapterReport[];
}

/** Heartbeats a node may miss before it is stale and gets no traffic. */
export const MISSED_HEARTBEATS_STALE = 3;

/** Redis hash of live node state: field = node id, value = LiveNode JSON. */
export function liveNodesKey(prefix: string): string {
  return `${prefix}nodes:live`;
}

function maxOrNull(values: (number | null)[]): number | null {
  const present = values.filter((v): v is number => v !== null);
  return present.length === 0 ? null : Math.max(...present);
}

/** Weight of a new TTFT sample in the moving average. */
const TTFT_EWMA_ALPHA = 0.3;

function sumOrNull(values: (number | null)[]): number | null {
  const present = values.filter((v): v is number => v !== null);
  return present.length === 0 ? null : present.reduce((a, b) => a + b, 0);
}

/** Summarises a heartbeat into the live entry (`previous` carries the TTFT moving average forward). */
export function liveFromHeartbeat(hb: Heartbeat, now: number, previous?: LiveNode): LiveNode {
  const ttfts = hb.engines.map((e) => e.recentTtftMs).filter((v): v is number => v !== null);
  const recentTtftMs = ttfts.length === 0 ? null : ttfts.reduce((a, b) => a + b, 0) / ttfts.length;
  const before = previous?.ttftEwmaMs ?? null;
  const ttftEwmaMs = recentTtftMs === null ? before : before === null ? recentTtftMs : TTFT_EWMA_ALPHA * recentTtftMs + (1 - TTFT_EWMA_ALPHA) * before;
  return {
    running: sumOrNull(hb.engines.map((e) => e.running)),
    engines: hb.engines.map((e) => ({
      id: e.id,
      kind: e.kind,
      healthy: e.healthy,
      circuit: e.circuit,
      inFlight: e.inFlight + e.queued,
      maxConcurrency: e.maxConcurrency,
      running: e.running,
      waiting: e.waiting,
      kvCacheUsage: e.kvCacheUsage,
      recentTtftMs: e.recentTtftMs,
    })),
    recentTtftMs,
    ttftEwmaMs,
    status: hb.status,
    at: now,
    intervalMs: hb.intervalMs,
    models: hb.models,
    inFlight: hb.engines.reduce((sum, e) => sum + e.inFlight + e.queued, 0),
    capacity: hb.engines.reduce((sum, e) => sum + e.maxConcurrency, 0),
    waiting: maxOrNull(hb.engines.map((e) => e.waiting)),
    kvCacheUsage: maxOrNull(hb.engines.map((e) => e.kvCacheUsage)),
    counters: engineCounters(hb),
    ...adaptersOf(hb),
  };
}

/** The adapters the heartbeat's engines report, one per name (`{}` when none reported the field). */
function adaptersOf(hb: Heartbeat): { adapters?: LoraAdapterReport[] } {
  if (!hb.engines.some((e) => e.adapters !== undefined)) return {};
  const byName = new Map<string, LoraAdapterReport>();
  for (const e of hb.engines) for (const a of e.adapters ?? []) if (!byName.has(a.name)) byName.set(a.name, { name: a.name, base: a.base });
  return { adapters: [...byName.values()] };
}

/** The token counters of the engines that report both of them. */
function engineCounters(hb: Heartbeat): Record<string, EngineTokenCounters> {
  const counters: Record<string, EngineTokenCounters> = {};
  for (const e of hb.engines) {
    if (e.promptTokensTotal !== null && e.generationTokensTotal !== null) {
      counters[e.id] = { promptTokens: e.promptTokensTotal, generationTokens: e.generationTokensTotal };
    }
  }
  return counters;
}

/** A live entry's engine token counters ({} for entries written before nodes reported them). */
export function liveCounters(live: LiveNode): Record<string, EngineTokenCounters> {
  return live.counters ?? {};
}

/** True when the node's last heartbeat is older than three of its own intervals. */
export function isStale(live: LiveNode, now: number): boolean {
  return now - live.at > MISSED_HEARTBEATS_STALE * live.intervalMs;
}
