import { Redis } from "@upstash/redis/cloudflare";

let client: { url: string; token: string; redis: Redis } | null = null;

/**
 * The isolate's Upstash client (module scope: it holds no connection, only config, and keeping it
 * lets `@upstash/ratelimit` caches live across requests). One retry only: the hot path would rather
 * fail fast than wait out five backoffs when Redis is down.
 */
export function redisFrom(url: string, token: string): Redis {
  if (client && client.url === url && client.token === token) return client.redis;
  const redis = new Redis({
    url,
    token,
    enableTelemetry: false,
    // Everything the gateway stores is UTF-8 text (JSON, numbers, ids), so replies need no base64
    // round trip: decoding every reply was a visible share of the request path's CPU (bench/).
    responseEncoding: false,
    retry: { retries: 1, backoff: () => 20 },
  });
  client = { url, token, redis };
  return redis;
}
