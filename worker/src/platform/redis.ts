import { Redis } from "@upstash/redis/cloudflare";

let client: { url: string; token: string; timeoutMs: number; redis: Redis } | null = null;

/**
 * The isolate's Upstash client (module scope: it holds no connection, only config, and keeping it
 * lets the scripts' SHA caches live across requests). One retry only: the hot path would rather
 * fail fast than wait out five backoffs when Redis is down. Every call, pipelines and scripts
 * included, has a deadline of `timeoutMs` (REDIS_TIMEOUT_MS) covering its retry: past it the call
 * rejects, and each caller's degraded mode applies (docs/limits.md).
 */
export function redisFrom(url: string, token: string, timeoutMs = 1_000): Redis {
  if (client && client.url === url && client.token === token && client.timeoutMs === timeoutMs) return client.redis;
  const redis = new Redis({
    url,
    token,
    enableTelemetry: false,
    // Everything the gateway stores is UTF-8 text (JSON, numbers, ids), so replies need no base64
    // round trip: decoding every reply was a visible share of the request path's CPU (bench/).
    responseEncoding: false,
    retry: { retries: 1, backoff: () => 20 },
    // A fresh signal per HTTP request; the client does not retry an aborted one.
    signal: () => AbortSignal.timeout(timeoutMs),
  });
  client = { url, token, timeoutMs, redis };
  return redis;
}
