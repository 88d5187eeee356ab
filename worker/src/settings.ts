import type { Layer, LayerLimits } from "./limits/types.ts";

/** Typed view of the worker's bindings, parsed once per isolate. Only this file and env.ts read bindings. */
export interface Settings {
  redisPrefix: string;
  keyCacheIsolateMs: number;
  keyCacheRedisSeconds: number;
  routingCacheIsolateMs: number;
  routingCacheRedisSeconds: number;
  upstreamConnectTimeoutMs: number;
  neonWsProxy: string | null;
  /** Default limits per layer (null = unlimited); overrides from the database take precedence. */
  limitDefaults: Record<Layer, LayerLimits>;
  limitsTimeoutMs: number;
}

function positiveInt(env: Env, name: keyof Env, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) {
    throw new Error(`Setting ${String(name)} must be a non-negative integer, got "${String(raw)}". Fix it in wrangler.toml [vars].`);
  }
  return value;
}

function optionalInt(env: Env, name: keyof Env): number | null {
  const raw = env[name];
  if (raw === undefined || raw === "") return null;
  return positiveInt(env, name, 0);
}

let cached: { env: Env; settings: Settings } | null = null;

/** Parses the vars of `env` (memoised per env object, which is stable within an isolate). */
export function settingsFrom(env: Env): Settings {
  if (cached?.env === env) return cached.settings;
  const settings: Settings = {
    redisPrefix: env.REDIS_PREFIX || "sy:",
    keyCacheIsolateMs: positiveInt(env, "KEY_CACHE_ISOLATE_SECONDS", 5) * 1000,
    keyCacheRedisSeconds: positiveInt(env, "KEY_CACHE_REDIS_SECONDS", 300),
    routingCacheIsolateMs: positiveInt(env, "ROUTING_CACHE_ISOLATE_SECONDS", 2) * 1000,
    routingCacheRedisSeconds: positiveInt(env, "ROUTING_CACHE_REDIS_SECONDS", 30),
    upstreamConnectTimeoutMs: positiveInt(env, "UPSTREAM_CONNECT_TIMEOUT_MS", 30_000),
    neonWsProxy: env.NEON_WS_PROXY ? env.NEON_WS_PROXY : null,
    limitDefaults: {
      global: { rpm: optionalInt(env, "LIMIT_GLOBAL_RPM"), tpm: optionalInt(env, "LIMIT_GLOBAL_TPM"), concurrency: null },
      tenant: { rpm: optionalInt(env, "LIMIT_TENANT_RPM"), tpm: optionalInt(env, "LIMIT_TENANT_TPM"), concurrency: optionalInt(env, "LIMIT_TENANT_CONCURRENCY") },
      environment: { rpm: optionalInt(env, "LIMIT_ENVIRONMENT_RPM"), tpm: optionalInt(env, "LIMIT_ENVIRONMENT_TPM"), concurrency: null },
      key: { rpm: optionalInt(env, "LIMIT_KEY_RPM"), tpm: optionalInt(env, "LIMIT_KEY_TPM"), concurrency: optionalInt(env, "LIMIT_KEY_CONCURRENCY") },
    },
    limitsTimeoutMs: positiveInt(env, "LIMITS_TIMEOUT_MS", 1000),
  };
  cached = { env, settings };
  return settings;
}
