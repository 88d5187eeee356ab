import { eq } from "drizzle-orm";
import { capacityReservations, limitOverrides, models, nodes, regions, streamProfiles } from "../../../schema/tables/index.ts";
import type { Db } from "../platform/db.ts";
import type { StreamProfile } from "../profiles/types.ts";
import { aliasIndex } from "./aliases.ts";

/** How the gateway picks a node among the healthy ones of a region (routing/strategies.ts). */
export const ROUTING_STRATEGIES = ["least-load", "prefix-affinity", "round-robin", "latency", "random"] as const;
/** A node-choice strategy. */
export type RoutingStrategy = (typeof ROUTING_STRATEGIES)[number];

/** A catalogue entry as the hot path needs it. Prices are USD per million tokens. */
export interface ModelEntry {
  id: string;
  family: string;
  kind: "chat" | "embedding" | "transcription";
  contextLength: number;
  inputPrice: number;
  outputPrice: number;
  cachedInputPrice: number | null;
  /** USD per minute of audio (transcription models); null or absent: audio is not priced by duration. */
  audioPrice?: number | null;
  createdAt: number;
  /** The model's node-choice strategy (null or absent: least-load). */
  routingStrategy?: RoutingStrategy | null;
  /** A LoRA adapter's base model (null or absent: not an adapter). */
  baseModel?: string | null;
  /** Where an engine loads the adapter from at runtime (vLLM's `lora_path`); null or absent: not loaded on demand. */
  adapterSource?: string | null;
  /** A cache hit's price as a share of what the GPU answer would have cost (docs/caching.md); absent: 0, free. */
  cacheHitPriceFactor?: number;
  /** Other names the model answers to on every route (routing/aliases.ts); absent: none. */
  aliases?: string[];
}

/** A region as routing needs it: where it is (null until an admin sets it) and its price multiplier. */
export interface RegionEntry {
  latitude: number | null;
  longitude: number | null;
  multiplier: number;
}

/** Reserved capacity: a tenant's tokens per second on a model, served first from `nodeIds`. */
export interface ReservationEntry {
  tenantId: string;
  model: string;
  tokensPerSecond: number;
  nodeIds: string[];
}

/** A backplane node as the hot path needs it. */
export interface NodeEntry {
  id: string;
  regionId: string;
  url: string;
  models: string[];
  /** Admin status (drain or disable a node by hand). */
  status: "active" | "draining" | "disabled";
  secretVersion: number;
  /** True once the node has sent a heartbeat: from then on it must keep sending them to get traffic. */
  heartbeats: boolean;
}

/**
 * Everything routing needs, small enough to cache as one value: the active catalogue and the
 * registered nodes. Kept in Redis for ROUTING_CACHE_REDIS_SECONDS and in the isolate for
 * ROUTING_CACHE_ISOLATE_SECONDS, so an ordinary request never queries Postgres.
 */
export interface RoutingSnapshot {
  builtAt: number;
  models: Record<string, ModelEntry>;
  nodes: NodeEntry[];
  /** The global layer's limit override (null fields keep the configured default). */
  globalLimits: { rpm: number | null; tpm: number | null } | null;
  /** Price multiplier per region (regions.price_multiplier); optional so snapshots cached before it existed still read. */
  regionMultipliers?: Record<string, number>;
  /** Regions by id (optional: snapshots cached before it existed). */
  regions?: Record<string, RegionEntry>;
  /** Capacity reservations (optional: snapshots cached before it existed). */
  reservations?: ReservationEntry[];
  /** Model aliases: alias → model id (routing/aliases.ts; optional: snapshots cached before it existed). */
  aliases?: Record<string, string>;
  /** Operators' agent streaming profiles (stream_profiles), on top of the built-ins (profiles/profiles.ts). */
  streamProfiles?: StreamProfile[];
}

/** Redis key of the routing snapshot. Admin tools delete it when models or nodes change. */
export function routingCacheKey(prefix: string): string {
  return `${prefix}routing:v1`;
}

/**
 * Redis key of the last snapshot built, kept for 7 days and never deleted by admin
 * changes: served only while Postgres cannot build a new one (platform/hot-state.ts).
 */
export function lastRoutingCacheKey(prefix: string): string {
  return `${prefix}routing:v1:last`;
}

/** Builds the snapshot from Postgres (cache miss path only). */
export async function loadRoutingSnapshot(db: Db): Promise<RoutingSnapshot> {
  const [modelRows, nodeRows, globalRows, regionRows, reservationRows, profileRows] = await Promise.all([
    db.select().from(models).where(eq(models.active, true)),
    db.select().from(nodes),
    db.select().from(limitOverrides).where(eq(limitOverrides.scope, "global")),
    db.select({ id: regions.id, multiplier: regions.priceMultiplier, latitude: regions.latitude, longitude: regions.longitude }).from(regions),
    db.select().from(capacityReservations),
    db.select().from(streamProfiles),
  ]);
  const global = globalRows[0];
  const catalogue: Record<string, ModelEntry> = {};
  for (const m of modelRows) {
    catalogue[m.id] = {
      id: m.id,
      family: m.family,
      kind: m.kind,
      contextLength: m.contextLength,
      inputPrice: Number(m.inputPricePerMTokens),
      outputPrice: Number(m.outputPricePerMTokens),
      cachedInputPrice: m.cachedInputPricePerMTokens === null ? null : Number(m.cachedInputPricePerMTokens),
      audioPrice: m.audioPricePerMinute === null ? null : Number(m.audioPricePerMinute),
      createdAt: Math.floor(m.createdAt.getTime() / 1000),
      routingStrategy: m.routingStrategy,
      baseModel: m.baseModel,
      adapterSource: m.adapterSource,
      cacheHitPriceFactor: Number(m.cacheHitPriceFactor),
      aliases: m.aliases,
    };
  }
  return {
    builtAt: Date.now(),
    models: catalogue,
    aliases: aliasIndex(Object.values(catalogue)),
    globalLimits: global ? { rpm: global.rpm, tpm: global.tpm } : null,
    regionMultipliers: Object.fromEntries(regionRows.map((r) => [r.id, Number(r.multiplier)])),
    regions: Object.fromEntries(regionRows.map((r) => [r.id, { latitude: r.latitude, longitude: r.longitude, multiplier: Number(r.multiplier) }])),
    streamProfiles: profileRows.map((p) => ({ name: p.name, chunkTokens: p.chunkTokens, timeoutMs: p.timeoutMs, bufferTokens: p.bufferTokens, intervalMs: p.intervalMs })),
    reservations: reservationRows.map((r) => ({ tenantId: r.tenantId, model: r.model, tokensPerSecond: r.tokensPerSecond, nodeIds: r.nodeIds })),
    nodes: nodeRows.map((n) => ({
      id: n.id,
      regionId: n.regionId,
      url: n.url,
      models: n.models,
      status: n.status,
      secretVersion: n.secretVersion,
      heartbeats: n.lastHeartbeatAt !== null,
    })),
  };
}
