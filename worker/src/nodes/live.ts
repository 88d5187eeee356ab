import type { Heartbeat, NodeStatus } from "../../../schema/contracts/heartbeat.ts";

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

/** Summarises a heartbeat into the live entry. */
export function liveFromHeartbeat(hb: Heartbeat, now: number): LiveNode {
  return {
    status: hb.status,
    at: now,
    intervalMs: hb.intervalMs,
    models: hb.models,
    inFlight: hb.engines.reduce((sum, e) => sum + e.inFlight + e.queued, 0),
    capacity: hb.engines.reduce((sum, e) => sum + e.maxConcurrency, 0),
    waiting: maxOrNull(hb.engines.map((e) => e.waiting)),
    kvCacheUsage: maxOrNull(hb.engines.map((e) => e.kvCacheUsage)),
  };
}

/** True when the node's last heartbeat is older than three of its own intervals. */
export function isStale(live: LiveNode, now: number): boolean {
  return now - live.at > MISSED_HEARTBEATS_STALE * live.intervalMs;
}
