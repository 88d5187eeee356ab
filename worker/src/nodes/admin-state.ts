/** What the fleet admin routes share: reading the live node state from Redis, and dropping the routing snapshot. */
import { liveNodesKey, type LiveNode } from "./live.ts";
import { circuitKey } from "../routing/breaker.ts";
import { routingCacheKey } from "../routing/snapshot.ts";
import { circuitState, type FleetLive } from "./admin-wire.ts";
import type { AdminContext } from "../admin/http.ts";
import { dropCaches } from "../admin/invalidate.ts";

/** Header set when Redis could not be read: the answer shows the registry without live state. */
export const LIVE_UNAVAILABLE_HEADER = "x-switchyard-live";

/**
 * The live node hash and the circuit hash, in one round trip. Redis failing is not fatal here (an
 * operator looking at a broken fleet needs the registry most): the answer carries no live state,
 * so heartbeating nodes show as stale, and says so in `x-switchyard-live: unavailable`.
 */
export async function readFleetLive(c: AdminContext): Promise<FleetLive> {
  const prefix = c.get("deps").settings.redisPrefix;
  try {
    const [live, circuits] = await c.get("deps").redis
      .pipeline()
      .hgetall<Record<string, LiveNode>>(liveNodesKey(prefix))
      .hgetall<Record<string, unknown>>(circuitKey(prefix))
      .exec<[Record<string, LiveNode> | null, Record<string, unknown> | null]>();
    const parsed: FleetLive["circuits"] = {};
    for (const [nodeId, value] of Object.entries(circuits ?? {})) {
      const state = circuitState(typeof value === "string" ? safeJson(value) : value);
      if (state) parsed[nodeId] = state;
    }
    return { live: live ?? {}, circuits: parsed };
  } catch (err) {
    c.get("deps").log("admin_live_state_unavailable", { requestId: c.get("deps").requestId, error: String(err) });
    c.header(LIVE_UNAVAILABLE_HEADER, "unavailable");
    return { live: {}, circuits: {} };
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** Drops the routing snapshot from Redis and this isolate after a committed fleet change (other isolates follow within ROUTING_CACHE_ISOLATE_SECONDS). */
export function dropRoutingSnapshot(c: AdminContext): Promise<void> {
  return dropCaches(c, [routingCacheKey(c.get("deps").settings.redisPrefix)]);
}
