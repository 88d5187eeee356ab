/**
 * What the autoscaler remembers between its runs (each in a fresh isolate): since when the queue of
 * a policy has been above target, and since when each of its nodes has been idle. One Redis string
 * per policy, JSON, expiring when runs stop (so a deleted policy leaves nothing behind), and bounded:
 * only the nodes of the current view are kept. Every call has the Redis client's deadline
 * (REDIS_TIMEOUT_MS, platform/redis.ts).
 *
 * Losing it (Redis flushed, or down) only restarts the clocks: a launch or a drain then waits one
 * more sustain or idle period; it never acts early.
 */
import type { Redis } from "@upstash/redis/cloudflare";
import { EMPTY_MEMORY, type Policy, type ScalingMemory } from "./decide.ts";

/** The Redis key of a policy's memory. */
export function memoryKey(prefix: string, model: string, region: string): string {
  return `${prefix}autoscaling:memory:${region}:${model}`;
}

/** How long a policy's memory outlives its last run: its longest clock plus a margin of ten runs. */
export function memoryTtlSeconds(policy: Policy): number {
  return Math.max(policy.scaleUpAfterSeconds, policy.idleSeconds) + 600;
}

/** Keeps what looks like a memory; anything else counts as none. */
export function parseMemory(value: unknown): ScalingMemory {
  const raw = typeof value === "string" ? safeJson(value) : value;
  if (!raw || typeof raw !== "object") return EMPTY_MEMORY;
  const { queueAboveSince, idleSince } = raw as Record<string, unknown>;
  const idle: Record<string, number> = {};
  if (idleSince && typeof idleSince === "object") {
    for (const [id, at] of Object.entries(idleSince)) if (typeof at === "number" && Number.isFinite(at)) idle[id] = at;
  }
  return { queueAboveSince: typeof queueAboveSince === "number" && Number.isFinite(queueAboveSince) ? queueAboveSince : null, idleSince: idle };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** The memories of `policies`, in their order, in one round trip. */
export async function readMemories(redis: Redis, prefix: string, policies: Policy[]): Promise<ScalingMemory[]> {
  if (policies.length === 0) return [];
  const values = await redis.mget<unknown[]>(...policies.map((p) => memoryKey(prefix, p.model, p.region)));
  return policies.map((_, i) => parseMemory(values[i]));
}

/** Stores a policy's memory for the next run. */
export async function writeMemory(redis: Redis, prefix: string, policy: Policy, memory: ScalingMemory): Promise<void> {
  await redis.set(memoryKey(prefix, policy.model, policy.region), JSON.stringify(memory), { ex: memoryTtlSeconds(policy) });
}
