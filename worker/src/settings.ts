import type { Layer, LayerLimits } from "./limits/types.ts";
import { parseOtlpHeaders } from "../../schema/contracts/trace-context.ts";
import type { QueueSettings } from "./queue/turn.ts";

/** Typed view of the worker's bindings, parsed once per isolate. Only this file and env.ts read bindings. */
export interface Settings {
  redisPrefix: string;
  keyCacheIsolateMs: number;
  keyCacheRedisSeconds: number;
  routingCacheIsolateMs: number;
  routingCacheRedisSeconds: number;
  /** How old the isolate's last routing view (live node state, circuits) and known keys may get while Redis is unreachable. */
  routingStaleMaxSeconds: number;
  /** The sliding window over which a reserving tenant's delivered tokens per second are measured (routing/reservation-usage.ts). */
  reservationWindowSeconds: number;
  /** How long Redis keeps a key's identity; past keyCacheRedisSeconds it is refreshed in the background and served meanwhile. */
  keyCacheStaleSeconds: number;
  /** Deadline of every Redis call (milliseconds). */
  redisTimeoutMs: number;
  /** Deadline of a database call (admin, jobs; milliseconds)… */
  dbTimeoutMs: number;
  /** …and of the cache-miss lookups a request waits for. */
  hotDbTimeoutMs: number;
  upstreamConnectTimeoutMs: number;
  /** A stream whose node has not answered within this many ms gets its 200 and SSE keep-alive comments (0: never). */
  streamKeepAliveMs: number;
  /** The edge queue (queue/, docs/edge-queue.md). */
  queue: QueueSettings;
  neonWsProxy: string | null;
  /** A federated-attention session with no request for this long ends by itself (seconds). */
  fedattnIdleTimeoutSeconds: number;
  /** Bytes of contributions one federated-attention session may hold waiting for their aggregate. */
  fedattnMaxPendingBytes: number;
  /** Participants one federated-attention session may have at once. */
  fedattnMaxParticipants: number;
  /** Default limits per layer (null = unlimited); overrides from the database take precedence. */
  limitDefaults: Record<Layer, LayerLimits>;
  limitsTimeoutMs: number;
  /** How long an isolate may admit from a capacity lease after its last grant (ms; 0: no leases, every request asks Redis). */
  leaseMs: number;
  /** A lease its isolate has not used for this long goes back to Redis (ms). */
  leaseIdleMs: number;
  /** Where streams are tapped for usage: by the gateway (every chunk read here) or by the node (piped natively here, docs/architecture.md step 8). */
  streamTap: "gateway" | "node";
  /** Which served requests get a `request_done` log line: every one, or only those that did not end well. */
  logRequests: "all" | "failed";
  /** Routing (docs/routing.md): least-load weights, prefix-affinity slack, failover bounds, breaker. */
  routing: {
    weights: { waiting: number; running: number; kvCache: number };
    affinitySlack: number;
    maxAttempts: number;
    deadlineMs: number;
    breakerFailures: number;
    breakerCooldownMs: number;
    /** Read the caller's location from x-switchyard-client-location (local stacks and tests only). */
    trustLocationHeader: boolean;
  };
  /** The response and embeddings caches (docs/caching.md). */
  cache: {
    /** How long a cached deterministic chat or completions answer is served (ms). */
    responseTtlMs: number;
    /** How long a cached embedding is served (ms). */
    embeddingTtlMs: number;
    /** Bytes a tenant's cached answers and embeddings may take in Redis; the entries closest to expiry go first. */
    tenantMaxBytes: number;
    /** Deadline of the cache read a cacheable request waits for (ms); past it the request is a miss. */
    readTimeoutMs: number;
  };
  /** The specialist council (docs/council.md). */
  council: {
    /** The model the built-in default council asks ("" = the catalogue's first chat model by id). */
    defaultModel: string;
  };
  /** Memory trails (docs/memory.md): how fast they cool and when a cold one is removed. */
  memory: MemorySettings;
  /** Tracing (docs/tracing.md); null when OTEL_EXPORTER_OTLP_ENDPOINT is empty: then nothing is recorded. */
  tracing: TracingSettings | null;
  /** Reconciliation: a window is an alert when |drift| / engine tokens exceeds this ratio… */
  dashboard: DashboardSettings;
  reconcileDriftThreshold: number;
  /** …and |drift| is at least this many tokens (so a quiet hour's few tokens never alert). */
  reconcileMinDriftTokens: number;
}

/** Where and how the gateway's traces are exported (docs/tracing.md). */
export interface TracingSettings {
  /** The collector's base URL; spans go to `{endpoint}/v1/traces` as OTLP/HTTP JSON. */
  endpoint: string;
  /** Head-sampling ratio in [0, 1]; traces of failed requests are exported whatever it says. */
  ratio: number;
  serviceName: string;
  /** Headers sent with every export (OTEL_EXPORTER_OTLP_HEADERS, a secret: never logged). */
  headers: Record<string, string>;
  /** Deadline of one export (ms). */
  timeoutMs: number;
}

/** The memory trails' temperature model and clean-up (docs/memory.md). */
export interface MemorySettings {
  /** Hours after which a trail left alone has half its temperature (at least one minute). */
  halfLifeHours: number;
  /** Below this temperature a trail is cold… */
  coldTemperature: number;
  /** …and removed by the cooling job once no breadcrumb was left on it for this many days. */
  retentionDays: number;
}

/** The dashboard's sessions (dashboard/session.ts). */
export interface DashboardSettings {
  /** A session unused for this long ends (DASHBOARD_SESSION_IDLE_MINUTES). */
  idleMs: number;
  /** A session ends this long after sign-in, used or not (DASHBOARD_SESSION_MAX_HOURS). */
  maxMs: number;
}

/** The text bindings (vars and secrets), not the Durable Object namespaces. */
type VarName = { [K in keyof Env]-?: Env[K] extends string | undefined ? K : never }[keyof Env];

function positiveInt(env: Env, name: VarName, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) {
    throw new Error(`Setting ${String(name)} must be a non-negative integer, got "${String(raw)}". Fix it in wrangler.toml [vars].`);
  }
  return value;
}

/** QUEUE_CLASS_HEADROOM_PERCENT: 0 to 45 (batch, two shares below the target, keeps at least a tenth of it). */
function headroomPercent(env: Env): number {
  const value = positiveInt(env, "QUEUE_CLASS_HEADROOM_PERCENT", 0);
  if (value > 45) throw new Error(`Setting QUEUE_CLASS_HEADROOM_PERCENT must be between 0 and 45 (batch counts a node full at the target less twice this share), got "${value}". Fix it in wrangler.toml [vars].`);
  return value;
}

function nonNegativeNumber(env: Env, name: VarName, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) {
    throw new Error(`Setting ${String(name)} must be a non-negative number, got "${String(raw)}". Fix it in wrangler.toml [vars].`);
  }
  return value;
}

function optionalInt(env: Env, name: VarName): number | null {
  const raw = env[name];
  if (raw === undefined || raw === "") return null;
  return positiveInt(env, name, 0);
}

function oneOf<T extends string>(env: Env, name: VarName, allowed: readonly T[], fallback: T): T {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = allowed.find((v) => v === raw);
  if (value === undefined) {
    throw new Error(`Setting ${String(name)} must be one of ${allowed.map((v) => `"${v}"`).join(", ")}, got "${String(raw)}". Fix it in wrangler.toml [vars].`);
  }
  return value;
}

/** Tracing's settings, or null (tracing off) when no endpoint is set. */
function tracingFrom(env: Env): TracingSettings | null {
  const endpoint = (env.OTEL_EXPORTER_OTLP_ENDPOINT ?? "").trim();
  if (endpoint === "") return null;
  if (!/^https?:\/\/[^/]/.test(endpoint)) {
    throw new Error(`Setting OTEL_EXPORTER_OTLP_ENDPOINT must be an http(s) URL (the collector's base, e.g. http://127.0.0.1:4318), got "${endpoint}". Fix it in wrangler.toml [vars].`);
  }
  const ratio = nonNegativeNumber(env, "OTEL_TRACES_SAMPLER_RATIO", 0.1);
  if (ratio > 1) throw new Error(`Setting OTEL_TRACES_SAMPLER_RATIO must be between 0 and 1, got "${String(env.OTEL_TRACES_SAMPLER_RATIO)}". Fix it in wrangler.toml [vars].`);
  let headers: Record<string, string>;
  try {
    headers = parseOtlpHeaders(env.OTEL_EXPORTER_OTLP_HEADERS ?? "");
  } catch (err) {
    // The value is a secret: the message names the entry, never its text.
    throw new Error(`Secret OTEL_EXPORTER_OTLP_HEADERS must be key=value pairs separated by commas: ${err instanceof Error ? err.message : String(err)}.`, { cause: err });
  }
  return {
    endpoint: endpoint.replace(/\/+$/, ""),
    ratio,
    serviceName: (env.OTEL_SERVICE_NAME ?? "").trim() || "switchyard-gateway",
    headers,
    timeoutMs: Math.max(1, positiveInt(env, "OTEL_EXPORTER_OTLP_TIMEOUT", 5_000)),
  };
}

let cached: { env: Env; settings: Settings } | null = null;

/** Parses the vars of `env` (memoised per env object, which is stable within an isolate). */
export function settingsFrom(env: Env): Settings {
  if (cached?.env === env) return cached.settings;
  const settings: Settings = {
    redisPrefix: env.REDIS_PREFIX || "sy:",
    keyCacheIsolateMs: positiveInt(env, "KEY_CACHE_ISOLATE_SECONDS", 5) * 1000,
    keyCacheRedisSeconds: positiveInt(env, "KEY_CACHE_REDIS_SECONDS", 300),
    routingCacheIsolateMs: positiveInt(env, "ROUTING_CACHE_ISOLATE_SECONDS", 1) * 1000,
    routingCacheRedisSeconds: positiveInt(env, "ROUTING_CACHE_REDIS_SECONDS", 30),
    routingStaleMaxSeconds: Math.max(1, positiveInt(env, "ROUTING_STALE_MAX_SECONDS", 600)),
    reservationWindowSeconds: Math.min(3600, Math.max(1, positiveInt(env, "RESERVATION_WINDOW_SECONDS", 20))),
    keyCacheStaleSeconds: Math.max(positiveInt(env, "KEY_CACHE_REDIS_SECONDS", 300), positiveInt(env, "KEY_CACHE_STALE_SECONDS", 86_400)),
    redisTimeoutMs: Math.max(1, positiveInt(env, "REDIS_TIMEOUT_MS", 1_000)),
    dbTimeoutMs: positiveInt(env, "DB_TIMEOUT_MS", 15_000),
    hotDbTimeoutMs: positiveInt(env, "HOT_DB_TIMEOUT_MS", 3_000),
    upstreamConnectTimeoutMs: positiveInt(env, "UPSTREAM_CONNECT_TIMEOUT_MS", 30_000),
    streamKeepAliveMs: positiveInt(env, "STREAM_KEEPALIVE_MS", 1_000),
    queue: {
      maxWaitMs: positiveInt(env, "EDGE_QUEUE_MAX_WAIT_MS", 10_000),
      maxWaiting: Math.max(1, positiveInt(env, "EDGE_QUEUE_MAX_WAITING", 1_000)),
      inflightTarget: positiveInt(env, "QUEUE_INFLIGHT_TARGET", 0),
      recheckMs: Math.max(50, positiveInt(env, "EDGE_QUEUE_RECHECK_MS", 1_000)),
      headroomPercent: headroomPercent(env),
    },
    neonWsProxy: env.NEON_WS_PROXY ? env.NEON_WS_PROXY : null,
    fedattnIdleTimeoutSeconds: Math.max(1, positiveInt(env, "FEDATTN_IDLE_TIMEOUT_SECONDS", 300)),
    // wrangler.toml sets 96 for Cloudflare, whose Durable Object isolate has 128 MB; a self-hosted
    // workerd config that leaves it unset gets 512 MiB (workerd has no per-object memory limit; the
    // benchmark's federated-attention edge sets 512 itself). docs/fedattn.md#limits.
    fedattnMaxPendingBytes: Math.max(1, positiveInt(env, "FEDATTN_MAX_PENDING_MB", 512)) * 1024 * 1024,
    fedattnMaxParticipants: Math.max(2, positiveInt(env, "FEDATTN_MAX_PARTICIPANTS", 64)),
    limitDefaults: {
      global: { rpm: optionalInt(env, "LIMIT_GLOBAL_RPM"), tpm: optionalInt(env, "LIMIT_GLOBAL_TPM"), concurrency: null },
      tenant: { rpm: optionalInt(env, "LIMIT_TENANT_RPM"), tpm: optionalInt(env, "LIMIT_TENANT_TPM"), concurrency: optionalInt(env, "LIMIT_TENANT_CONCURRENCY") },
      environment: { rpm: optionalInt(env, "LIMIT_ENVIRONMENT_RPM"), tpm: optionalInt(env, "LIMIT_ENVIRONMENT_TPM"), concurrency: null },
      key: { rpm: optionalInt(env, "LIMIT_KEY_RPM"), tpm: optionalInt(env, "LIMIT_KEY_TPM"), concurrency: optionalInt(env, "LIMIT_KEY_CONCURRENCY") },
    },
    routing: {
      weights: {
        waiting: nonNegativeNumber(env, "ROUTING_WAITING_WEIGHT", 1),
        running: nonNegativeNumber(env, "ROUTING_RUNNING_WEIGHT", 0.1),
        kvCache: nonNegativeNumber(env, "ROUTING_KV_CACHE_WEIGHT", 2),
      },
      affinitySlack: nonNegativeNumber(env, "ROUTING_AFFINITY_SLACK", 0.25),
      maxAttempts: Math.max(1, positiveInt(env, "ROUTING_MAX_ATTEMPTS", 3)),
      deadlineMs: positiveInt(env, "ROUTING_DEADLINE_MS", 60_000),
      breakerFailures: Math.max(1, positiveInt(env, "BREAKER_FAILURES", 3)),
      breakerCooldownMs: positiveInt(env, "BREAKER_COOLDOWN_MS", 30_000),
      trustLocationHeader: env.TRUST_LOCATION_HEADER === "true",
    },
    limitsTimeoutMs: positiveInt(env, "LIMITS_TIMEOUT_MS", 1000),
    // At most 20 s: a lease goes back from a request's waitUntil, which the runtime bounds at 30 s.
    leaseMs: Math.min(20, positiveInt(env, "LEASE_SECONDS", 5)) * 1000,
    leaseIdleMs: Math.max(10, positiveInt(env, "LEASE_IDLE_MS", 1_000)),
    logRequests: oneOf(env, "LOG_REQUESTS", ["failed", "all"], "failed"),
    streamTap: oneOf(env, "STREAM_TAP", ["gateway", "node"], "gateway"),
    cache: {
      responseTtlMs: positiveInt(env, "CACHE_RESPONSE_TTL_SECONDS", 1_800) * 1000,
      embeddingTtlMs: positiveInt(env, "CACHE_EMBEDDING_TTL_SECONDS", 3_600) * 1000,
      tenantMaxBytes: positiveInt(env, "CACHE_TENANT_MAX_BYTES", 64 * 1024 * 1024),
      readTimeoutMs: Math.max(1, positiveInt(env, "CACHE_READ_TIMEOUT_MS", 200)),
    },
    council: { defaultModel: (env.COUNCIL_DEFAULT_MODEL ?? "").trim() },
    memory: {
      halfLifeHours: Math.max(1 / 60, nonNegativeNumber(env, "MEMORY_HALF_LIFE_HOURS", 24)),
      coldTemperature: nonNegativeNumber(env, "MEMORY_COLD_TEMPERATURE", 5),
      retentionDays: nonNegativeNumber(env, "MEMORY_RETENTION_DAYS", 30),
    },
    tracing: tracingFrom(env),
    dashboard: {
      idleMs: Math.max(1, positiveInt(env, "DASHBOARD_SESSION_IDLE_MINUTES", 30)) * 60_000,
      maxMs: Math.max(1, positiveInt(env, "DASHBOARD_SESSION_MAX_HOURS", 8)) * 3_600_000,
    },
    reconcileDriftThreshold: nonNegativeNumber(env, "RECONCILE_DRIFT_THRESHOLD", 0.01),
    reconcileMinDriftTokens: positiveInt(env, "RECONCILE_MIN_DRIFT_TOKENS", 100),
  };
  cached = { env, settings };
  return settings;
}
