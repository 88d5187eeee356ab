import type { Redis } from "@upstash/redis/cloudflare";

/**
 * A circuit breaker per node, shared by every isolate through one Redis hash (field = node id).
 * `failures` consecutive failures (unreachable, timeout, 5xx before the first byte) open it for the
 * cool-down; after that it is half open: one trial request (claimed atomically) decides whether it
 * closes (success) or opens again (failure). Reads ride along with the routing view's pipeline;
 * writes happen in `waitUntil`.
 */
export interface CircuitState {
  failures: number;
  /** Unix ms until which the node gets no traffic; 0 = closed. */
  openUntil: number;
}

/** What routing does with a node's circuit right now. */
export type CircuitPhase = "closed" | "open" | "half_open";

/** Redis hash of circuit states. */
export function circuitKey(prefix: string): string {
  return `${prefix}nodes:circuit`;
}

function trialKey(prefix: string, nodeId: string): string {
  return `${prefix}nodes:circuit:trial:${nodeId}`;
}

/** The phase of a circuit at `now`. */
export function circuitPhase(state: CircuitState | undefined, now: number): CircuitPhase {
  if (!state || state.openUntil === 0) return "closed";
  return now < state.openUntil ? "open" : "half_open";
}

// KEYS[1] = hash, KEYS[2] = the node's trial claim, ARGV = node id, threshold, cool-down ms, now.
// Returns { failures, openUntil }. A failure also ends any trial, so the next half-open window can
// claim a new one at once.
const FAILURE = `
redis.call("DEL", KEYS[2])
local raw = redis.call("HGET", KEYS[1], ARGV[1])
local state = raw and cjson.decode(raw) or { failures = 0, openUntil = 0 }
state.failures = state.failures + 1
local now = tonumber(ARGV[4])
if state.failures >= tonumber(ARGV[2]) and (state.openUntil == 0 or state.openUntil <= now) then
  state.openUntil = now + tonumber(ARGV[3])
end
redis.call("HSET", KEYS[1], ARGV[1], cjson.encode(state))
return { state.failures, state.openUntil }
`;

/** Breaker settings. */
export interface BreakerSettings {
  failures: number;
  cooldownMs: number;
}

/**
 * Counts a failure; opens the circuit at the threshold (or again after a failed trial). Returns
 * the state it wrote, for the isolate's own copy.
 */
export async function recordFailure(redis: Redis, prefix: string, nodeId: string, settings: BreakerSettings, now = Date.now()): Promise<CircuitState> {
  const [failures, openUntil] = await redis.eval<string[], [number, number]>(FAILURE, [circuitKey(prefix), trialKey(prefix, nodeId)], [nodeId, String(settings.failures), String(settings.cooldownMs), String(now)]);
  return { failures: Number(failures), openUntil: Number(openUntil) };
}

/** A success closes the circuit (only written when it was not already closed and clean). */
export async function recordSuccess(redis: Redis, prefix: string, nodeId: string): Promise<void> {
  await redis.hdel(circuitKey(prefix), nodeId);
  await redis.del(trialKey(prefix, nodeId));
}

/**
 * Claims the one trial request of a half-open circuit (SET NX with the cool-down as its lifetime,
 * so a trial that never reports back frees the claim). True for exactly one caller.
 */
export async function claimTrial(redis: Redis, prefix: string, nodeId: string, cooldownMs: number): Promise<boolean> {
  return (await redis.set(trialKey(prefix, nodeId), "1", { nx: true, px: Math.max(1000, cooldownMs) })) === "OK";
}
