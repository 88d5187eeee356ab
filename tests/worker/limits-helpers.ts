import { env } from "cloudflare:test";
import { Redis } from "@upstash/redis/cloudflare";
import { vi } from "vitest";
import { LAYERS, type AdmissionSubject, type Layer, type LayerLimits } from "../../worker/src/limits/types.ts";

/** Limits per layer for a test subject; missing values are unlimited. */
export type Limits = Partial<Record<Layer, Partial<LayerLimits>>>;

/** An admission subject with the given limits (ids default to t1/e1/k1). */
export function subject(limits: Limits, ids: Partial<Pick<AdmissionSubject, "tenantId" | "environmentId" | "keyId">> = {}): AdmissionSubject {
  const all = {} as Record<Layer, LayerLimits>;
  for (const layer of LAYERS) all[layer] = { rpm: null, tpm: null, concurrency: null, ...limits[layer] };
  return { tenantId: "t1", environmentId: "e1", keyId: "k1", ...ids, limits: all };
}

/** A key prefix no other test shares, so buckets and sets never carry over. */
export function freshPrefix(): string {
  return `${env.REDIS_PREFIX}t-${crypto.randomUUID()}:`;
}

/** A client for a port nothing listens on: every command fails at once with a connection error. */
export function deadRedis(url = "http://127.0.0.1:1"): Redis {
  return new Redis({ url, token: "x", enableTelemetry: false, retry: { retries: 1, backoff: () => 20 } });
}

/**
 * Runs `fn` with a Redis whose HTTP requests never get an answer (the real outage mode a timeout
 * exists for; a closed port answers at once). Only requests to this client's host are held.
 */
export async function withSilentRedis<T>(fn: (redis: Redis) => Promise<T>): Promise<T> {
  const realFetch = globalThis.fetch;
  const silent = "http://silent-redis.test";
  vi.stubGlobal("fetch", (input: RequestInfo | URL, init?: RequestInit) =>
    String(input instanceof Request ? input.url : input).startsWith(silent) ? new Promise<Response>(() => {}) : realFetch(input, init),
  );
  try {
    return await fn(deadRedis(silent));
  } finally {
    vi.unstubAllGlobals();
  }
}
