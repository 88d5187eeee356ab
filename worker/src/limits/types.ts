import type { Redis } from "@upstash/redis/cloudflare";
/** The four layers every request is limited at, outermost first. */
export const LAYERS = ["global", "tenant", "environment", "key"] as const;
/** A limit layer. */
export type Layer = (typeof LAYERS)[number];

/** Limits of one layer; null means unlimited. */
export interface LayerLimits {
  /** Requests per minute. */
  rpm: number | null;
  /** Tokens per minute (prompt estimate + max output tokens at admission, as OpenAI does; real usage beyond that after the response). */
  tpm: number | null;
  /** Requests in flight at once (streams included). Applied at the tenant and key layers. */
  concurrency: number | null;
}

/** Who a request is counted against, with the effective limits of each layer. */
export interface AdmissionSubject {
  tenantId: string;
  environmentId: string;
  keyId: string;
  limits: Record<Layer, LayerLimits>;
}

/** Identifier of a subject at a layer (the Redis key part). */
export function layerId(subject: AdmissionSubject, layer: Layer): string {
  switch (layer) {
    case "global":
      return "global";
    case "tenant":
      return `tenant:${subject.tenantId}`;
    case "environment":
      return `env:${subject.environmentId}`;
    case "key":
      return `key:${subject.keyId}`;
  }
}

/**
 * A Redis pipeline the caller executes: the writes of a request's end (lease release, budget
 * settlement, usage and audit events) share one, so they cost one round trip together.
 */
export type RedisBatch = ReturnType<Redis["pipeline"]>;
