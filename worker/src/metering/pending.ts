import type { Redis } from "@upstash/redis/cloudflare";
import { backlog } from "../platform/outbox.ts";
import { usageOutboxKey } from "./flush.ts";

/** What reconciliation needs to know of a usage event still waiting in Redis. */
export interface PendingUsage {
  nodeId: string | null;
  /** Unix ms when the request ended (start + latency): the instant reconciliation files it under. */
  endedAt: number;
}

/** Past this many waiting events the backlog is not read: every node counts as having events waiting. */
export const MAX_PENDING_INSPECTED = 5_000;

// An event that is not a JSON object cannot be flushed either (the flush would stop on it first).
function pendingOf(item: unknown): PendingUsage | null {
  let parsed: unknown = item;
  try {
    if (typeof item === "string") parsed = JSON.parse(item);
  } catch {
    return null;
  }
  if (!parsed || typeof parsed !== "object") return null;
  const { nodeId, at, latencyMs } = parsed as { nodeId?: unknown; at?: unknown; latencyMs?: unknown };
  const start = typeof at === "string" || typeof at === "number" ? new Date(at).getTime() : Number.NaN;
  if (Number.isNaN(start)) return null;
  return { nodeId: typeof nodeId === "string" ? nodeId : null, endedAt: start + (typeof latencyMs === "number" ? latencyMs : 0) };
}

/** The usage outbox after a flush: its size, and its events unless there were too many to read. */
export interface PendingSnapshot {
  backlog: number;
  /** null when `backlog` is above MAX_PENDING_INSPECTED (then every node counts as having events waiting). */
  events: PendingUsage[] | null;
}

/**
 * The usage events waiting in the outbox, queued and in flight. Read after a flush, when the
 * backlog is normally the handful of events that arrived during it.
 */
export async function pendingUsage(redis: Redis, prefix: string): Promise<PendingSnapshot> {
  const key = usageOutboxKey(prefix);
  const waiting = await backlog(redis, key);
  if (waiting === 0) return { backlog: 0, events: [] };
  if (waiting > MAX_PENDING_INSPECTED) return { backlog: waiting, events: null };
  const [queued, inflight] = await Promise.all([redis.lrange<unknown>(key, 0, -1), redis.lrange<unknown>(`${key}:inflight`, 0, -1)]);
  const events = [...queued, ...inflight].map(pendingOf).filter((p): p is PendingUsage => p !== null);
  return { backlog: waiting, events };
}

/** How many waiting events belong to a node's window (requests it served that ended before `end`). */
export function pendingFor(snapshot: PendingSnapshot, nodeId: string, end: number): number {
  if (snapshot.events === null) return snapshot.backlog;
  return snapshot.events.filter((p) => p.nodeId === nodeId && p.endedAt < end).length;
}
