import { z } from "zod";
import { parseOtlpHeaders } from "../../schema/contracts/trace-context.ts";

/** Engine kinds the backplane knows how to probe. `sim` is the simulated vLLM (same wire format as `vllm`); `llamacpp` is llama.cpp's llama-server. */
export type EngineKind = "vllm" | "openai" | "ollama" | "sim" | "llamacpp";

/** One inference engine on this host. */
export interface EngineConfig {
  /** Stable id used in logs, metrics and heartbeats (default `<kind>-<index>`). */
  id: string;
  kind: EngineKind;
  /** Base URL, e.g. http://127.0.0.1:8000 (no trailing slash). */
  url: string;
  /** Served model names; empty means "ask the engine" (`/v1/models`, or `/api/tags` for Ollama). */
  models: string[];
  /** Requests the backplane lets run on this engine at once. */
  maxConcurrency: number;
  /** Requests allowed to wait for a slot; beyond it the backplane sheds load with 503. */
  maxQueue: number;
  /** Bearer token for the engine (vLLM's or llama-server's --api-key). */
  apiKey: string | null;
  /**
   * The engine runs with `--scheduling-policy priority` (`priority=1`): requests get the gateway's rank
   * as vLLM's `priority` field. Otherwise any `priority` a body carries is removed, since vLLM refuses
   * a non-zero one under fcfs (docs/priority.md). Off when absent.
   */
  priorityScheduling?: boolean;
}

/** Spot / preemption watchers, each off unless switched on. Base URLs are settings so tests can use loopback fakes. */
export interface SpotConfig {
  aws: boolean;
  gcp: boolean;
  azure: boolean;
  awsMetadataUrl: string;
  gcpMetadataUrl: string;
  azureMetadataUrl: string;
  pollIntervalMs: number;
}

/** Where and how the backplane's traces are exported (docs/tracing.md). */
export interface TracingConfig {
  /** The collector's base URL; spans go to `{endpoint}/v1/traces` as OTLP/HTTP JSON. */
  endpoint: string;
  /** Head-sampling ratio in [0, 1] for traces the gateway did not mark sampled; failed requests are always kept. */
  ratio: number;
  serviceName: string;
  /** Headers for the collector (authentication: a secret, never logged). */
  headers: Record<string, string>;
  /** Deadline of one export (ms). */
  timeoutMs: number;
}

/** Log verbosity; `debug` adds one line per request. */
export type LogLevel = "error" | "warn" | "info" | "debug";

/** Validated backplane configuration. Parsed once at start; an invalid value stops the daemon. */
export interface BackplaneConfig {
  nodeId: string;
  region: string;
  /** URL the gateway uses to reach this node (sent in heartbeats). */
  publicUrl: string;
  /** Gateway base URL for heartbeats and spot notices; null runs without them. */
  gatewayUrl: string | null;
  /** Shared secret with the gateway (printed by `npm run admin -- node secret`). */
  secret: string;
  engines: EngineConfig[];
  host: string;
  port: number;
  /** Serve plain HTTP on a non-loopback address (off: HTTPS or loopback only). */
  allowInsecureHttp: boolean;
  tlsCertFile: string | null;
  tlsKeyFile: string | null;
  /** Engine health probe period. */
  healthIntervalMs: number;
  /** Engine load scrape period (vLLM /metrics). */
  loadIntervalMs: number;
  heartbeatIntervalMs: number;
  /** Time the engine has to send its first byte (streams: the first event; others: the response). */
  firstByteTimeoutMs: number;
  /** Longest a non-streamed request may take in total (its first byte is the whole answer). */
  requestTimeoutMs: number;
  /** Waits before each retry of a request that failed before its first byte. */
  retryBackoffMs: number[];
  /** Consecutive failures that open an engine's circuit. */
  breakerFailures: number;
  /** How long an open circuit stays open before one probe decides. */
  breakerOpenMs: number;
  /** How long in-flight requests may take to finish after a drain starts. */
  drainGraceMs: number;
  spot: SpotConfig;
  /** Path of nvidia-smi (GPU facts are skipped when it is missing). */
  nvidiaSmiPath: string;
  logLevel: LogLevel;
  /** Tracing; null (off, nothing recorded) unless an OTLP endpoint is set. */
  tracing: TracingConfig | null;
}

/** Flag and environment variable of each top-level setting, for help texts and error messages. */
export const SETTINGS = {
  nodeId: { flag: "--node-id", env: "BACKPLANE_NODE_ID", help: "node id registered with the gateway (required)" },
  region: { flag: "--region", env: "BACKPLANE_REGION", help: "region id of this host (required)" },
  publicUrl: { flag: "--public-url", env: "BACKPLANE_PUBLIC_URL", help: "URL the gateway uses to reach this node (default http(s)://host:port)" },
  gatewayUrl: { flag: "--gateway-url", env: "BACKPLANE_GATEWAY_URL", help: "gateway base URL for heartbeats and spot notices" },
  secret: { flag: "--secret", env: "BACKPLANE_SECRET", help: "node signing secret (required)" },
  engines: { flag: "--engine", env: "BACKPLANE_ENGINES", help: "kind=vllm|llamacpp|openai|ollama|sim,url=http://127.0.0.1:8000[,model=m]…[,max-concurrency=64][,max-queue=256][,id=x][,api-key=k][,priority=1] (priority=1: the engine runs vLLM's --scheduling-policy priority; repeatable; env: ';'-separated)" },
  host: { flag: "--host", env: "BACKPLANE_HOST", help: "listen address (default 127.0.0.1)" },
  port: { flag: "--port", env: "BACKPLANE_PORT", help: "listen port (default 8443)" },
  allowInsecureHttp: { flag: "--allow-insecure-http", env: "BACKPLANE_ALLOW_INSECURE_HTTP", help: "allow plain HTTP on a non-loopback address" },
  tlsCertFile: { flag: "--tls-cert", env: "BACKPLANE_TLS_CERT", help: "PEM certificate (HTTPS with --tls-key)" },
  tlsKeyFile: { flag: "--tls-key", env: "BACKPLANE_TLS_KEY", help: "PEM private key" },
  healthIntervalMs: { flag: "--health-interval-ms", env: "BACKPLANE_HEALTH_INTERVAL_MS", help: "engine health probe period (default 30000)" },
  loadIntervalMs: { flag: "--load-interval-ms", env: "BACKPLANE_LOAD_INTERVAL_MS", help: "engine load scrape period (default 2000)" },
  heartbeatIntervalMs: { flag: "--heartbeat-interval-ms", env: "BACKPLANE_HEARTBEAT_INTERVAL_MS", help: "heartbeat period (default 5000)" },
  firstByteTimeoutMs: { flag: "--first-byte-timeout-ms", env: "BACKPLANE_FIRST_BYTE_TIMEOUT_MS", help: "time for a stream's first event (default 30000)" },
  requestTimeoutMs: { flag: "--request-timeout-ms", env: "BACKPLANE_REQUEST_TIMEOUT_MS", help: "time for a whole non-streamed answer (default 600000)" },
  retryBackoffMs: { flag: "--retry-backoff-ms", env: "BACKPLANE_RETRY_BACKOFF_MS", help: "waits before retries, comma-separated (default 1000,2000,4000)" },
  breakerFailures: { flag: "--breaker-failures", env: "BACKPLANE_BREAKER_FAILURES", help: "consecutive failures that open a circuit (default 5)" },
  breakerOpenMs: { flag: "--breaker-open-ms", env: "BACKPLANE_BREAKER_OPEN_MS", help: "how long a circuit stays open (default 60000)" },
  drainGraceMs: { flag: "--drain-grace-ms", env: "BACKPLANE_DRAIN_GRACE_MS", help: "time for in-flight requests when draining (default 30000)" },
  spotAws: { flag: "--spot-aws", env: "BACKPLANE_SPOT_AWS", help: "watch AWS spot interruption notices" },
  spotGcp: { flag: "--spot-gcp", env: "BACKPLANE_SPOT_GCP", help: "watch GCP preemption" },
  spotAzure: { flag: "--spot-azure", env: "BACKPLANE_SPOT_AZURE", help: "watch Azure Scheduled Events (Preempt)" },
  awsMetadataUrl: { flag: "--aws-metadata-url", env: "BACKPLANE_AWS_METADATA_URL", help: "default http://169.254.169.254" },
  gcpMetadataUrl: { flag: "--gcp-metadata-url", env: "BACKPLANE_GCP_METADATA_URL", help: "default http://metadata.google.internal" },
  azureMetadataUrl: { flag: "--azure-metadata-url", env: "BACKPLANE_AZURE_METADATA_URL", help: "default http://169.254.169.254" },
  spotPollIntervalMs: { flag: "--spot-poll-interval-ms", env: "BACKPLANE_SPOT_POLL_INTERVAL_MS", help: "metadata poll period (default 5000)" },
  nvidiaSmiPath: { flag: "--nvidia-smi", env: "BACKPLANE_NVIDIA_SMI", help: "nvidia-smi path (default nvidia-smi)" },
  logLevel: { flag: "--log-level", env: "BACKPLANE_LOG_LEVEL", help: "error|warn|info|debug (default info; debug logs every request)" },
  // Tracing (docs/tracing.md): the OpenTelemetry SDKs' own variable names, so one environment serves both.
  otelEndpoint: { flag: "--otel-endpoint", env: "OTEL_EXPORTER_OTLP_ENDPOINT", help: "OpenTelemetry collector base URL: spans go to <url>/v1/traces as OTLP/HTTP JSON (default: tracing off)" },
  otelSamplerRatio: { flag: "--otel-sampler-ratio", env: "OTEL_TRACES_SAMPLER_RATIO", help: "share of traces kept, 0-1, when the gateway did not sample them (default 0.1; failed requests always)" },
  otelServiceName: { flag: "--otel-service-name", env: "OTEL_SERVICE_NAME", help: "service.name of this node's spans (default switchyard-backplane)" },
  otelHeaders: { flag: "--otel-headers", env: "OTEL_EXPORTER_OTLP_HEADERS", help: "headers for the collector, key=value,... with percent-encoded values (a secret)" },
  otelTimeoutMs: { flag: "--otel-timeout-ms", env: "OTEL_EXPORTER_OTLP_TIMEOUT", help: "deadline of one trace export in ms (default 5000)" },
} as const;

/** A raw setting name (the keys of SETTINGS). */
export type SettingName = keyof typeof SETTINGS;

/** Thrown for an invalid configuration; the message names the setting and how to fix it. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

const ID = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const httpUrl = z.url({ protocol: /^https?$/ }).transform((u) => u.replace(/\/+$/, ""));
const ms = (min: number) => z.coerce.number().int().min(min);
const bool = z.union([z.boolean(), z.enum(["true", "false", "1", "0", "yes", "no"]).transform((v) => v === "true" || v === "1" || v === "yes")]);

const engineSchema = z.object({
  id: z.string().regex(ID, "must be lowercase letters, digits, '.', '_' or '-'"),
  kind: z.enum(["vllm", "openai", "ollama", "sim", "llamacpp"]),
  url: httpUrl,
  models: z.array(z.string().min(1)),
  maxConcurrency: z.coerce.number().int().min(1),
  maxQueue: z.coerce.number().int().min(0),
  apiKey: z.string().min(1).nullable(),
  priorityScheduling: z.boolean(),
});

/**
 * Parses an engine spec `kind=vllm,url=http://127.0.0.1:8000,model=a,model=b,max-concurrency=64,max-queue=256,id=x,api-key=k,priority=1`.
 */
export function parseEngineSpec(spec: string, index: number): z.input<typeof engineSchema> {
  const fields = new Map<string, string[]>();
  for (const part of spec.split(",")) {
    const eq = part.indexOf("=");
    if (eq <= 0) throw new ConfigError(`Invalid backplane setting --engine / BACKPLANE_ENGINES: "${part}" is not key=value (in "${spec}").`);
    const key = part.slice(0, eq).trim();
    const list = fields.get(key) ?? [];
    list.push(part.slice(eq + 1).trim());
    fields.set(key, list);
  }
  const known = new Set(["kind", "url", "model", "max-concurrency", "max-queue", "id", "api-key", "priority"]);
  for (const key of fields.keys()) {
    if (!known.has(key)) throw new ConfigError(`Invalid backplane setting --engine / BACKPLANE_ENGINES: unknown key "${key}" (known: ${[...known].join(", ")}).`);
  }
  const one = (key: string) => fields.get(key)?.at(-1);
  const kind = one("kind") ?? "vllm";
  const priority = one("priority") ?? "0";
  if (!/^(1|0|true|false|yes|no)$/.test(priority)) throw new ConfigError(`Invalid backplane setting --engine / BACKPLANE_ENGINES: priority must be 1 (the engine runs --scheduling-policy priority) or 0, got "${priority}" (in "${spec}").`);
  return {
    id: one("id") ?? `${kind}-${index}`,
    kind: kind as EngineKind,
    url: one("url") ?? "",
    models: fields.get("model") ?? [],
    maxConcurrency: one("max-concurrency") ?? 64,
    maxQueue: one("max-queue") ?? 256,
    apiKey: one("api-key") ?? null,
    priorityScheduling: priority === "1" || priority === "true" || priority === "yes",
  };
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

/** Raw settings: strings from flags/env, or typed values from code. Engines may be specs or objects. */
export type RawConfig = Partial<Record<SettingName, unknown>> & {
  engines?: string | string[] | Partial<EngineConfig>[];
};

function fail(name: SettingName | "engines", message: string): never {
  const s = SETTINGS[name];
  throw new ConfigError(`Invalid backplane setting ${s.flag} / ${s.env}: ${message}`);
}

function engineInputs(raw: RawConfig["engines"]): z.input<typeof engineSchema>[] {
  if (raw === undefined || (typeof raw === "string" && raw.trim() === "")) return [];
  const specs = typeof raw === "string" ? raw.split(";").map((s) => s.trim()).filter(Boolean) : raw;
  return specs.map((spec, i) =>
    typeof spec === "string"
      ? parseEngineSpec(spec, i)
      : { ...parseEngineSpec(`kind=${spec.kind ?? "vllm"}`, i), ...spec, id: spec.id ?? `${spec.kind ?? "vllm"}-${i}` },
  );
}

function field<T>(name: SettingName, schema: z.ZodType<T>, value: unknown, fallback: T): T {
  if (value === undefined || value === "" || value === null) return fallback;
  const result = schema.safeParse(value);
  if (!result.success) fail(name, result.error.issues[0]?.message ?? "invalid value");
  return result.data;
}

function required<T>(name: SettingName, schema: z.ZodType<T>, value: unknown): T {
  if (value === undefined || value === "" || value === null) fail(name, "is required");
  return field(name, schema, value, undefined as T);
}

/** Validates raw settings (flags over env, env over defaults) into a config. */
export function parseConfig(raw: RawConfig): BackplaneConfig {
  const engines = engineInputs(raw.engines).map((input, i) => {
    const result = engineSchema.safeParse(input);
    if (!result.success) {
      const issue = result.error.issues[0];
      fail("engines", `engine ${i + 1} (${input.id}): ${String(issue?.path.join(".") ?? "")} ${issue?.message ?? "invalid"}`);
    }
    return result.data;
  });
  if (engines.length === 0) fail("engines", "at least one engine is required, e.g. --engine kind=vllm,url=http://127.0.0.1:8000");
  const ids = new Set<string>();
  for (const e of engines) {
    if (ids.has(e.id)) fail("engines", `two engines have the id "${e.id}"; give them distinct id=…`);
    ids.add(e.id);
  }

  const host = field("host", z.string().min(1), raw.host, "127.0.0.1");
  const port = field("port", z.coerce.number().int().min(0).max(65535), raw.port, 8443);
  const tlsCertFile = field("tlsCertFile", z.string().min(1).nullable(), raw.tlsCertFile, null);
  const tlsKeyFile = field("tlsKeyFile", z.string().min(1).nullable(), raw.tlsKeyFile, null);
  if ((tlsCertFile === null) !== (tlsKeyFile === null)) fail("tlsCertFile", "set both --tls-cert and --tls-key, or neither.");
  const allowInsecureHttp = field("allowInsecureHttp", bool, raw.allowInsecureHttp, false);
  if (tlsCertFile === null && !LOOPBACK.test(host) && !allowInsecureHttp) {
    fail("allowInsecureHttp", `plain HTTP on ${host} would expose the node unencrypted. Give --tls-cert and --tls-key, listen on 127.0.0.1 behind a tunnel, or pass --allow-insecure-http.`);
  }
  const scheme = tlsCertFile ? "https" : "http";
  const retryBackoffMs = field(
    "retryBackoffMs",
    z.union([z.array(z.number().int().min(0)), z.string().transform((s, ctx) => {
      const values = s.split(",").map((v) => Number(v.trim()));
      if (values.some((v) => !Number.isInteger(v) || v < 0)) ctx.addIssue({ code: "custom", message: "must be comma-separated non-negative integers" });
      return values;
    })]),
    raw.retryBackoffMs,
    [1000, 2000, 4000],
  );

  return {
    nodeId: required("nodeId", z.string().regex(ID, "must be 1-63 lowercase letters, digits, '.', '_' or '-'"), raw.nodeId),
    region: required("region", z.string().regex(ID, "must be 1-63 lowercase letters, digits, '.', '_' or '-'"), raw.region),
    publicUrl: field("publicUrl", httpUrl, raw.publicUrl, `${scheme}://${LOOPBACK.test(host) ? host : "127.0.0.1"}:${port}`),
    gatewayUrl: field("gatewayUrl", httpUrl.nullable(), raw.gatewayUrl, null),
    secret: required("secret", z.string().min(32, "must be at least 32 characters (use the secret printed by `npm run admin -- node secret`)"), raw.secret),
    engines,
    host,
    port,
    allowInsecureHttp,
    tlsCertFile,
    tlsKeyFile,
    healthIntervalMs: field("healthIntervalMs", ms(100), raw.healthIntervalMs, 30_000),
    loadIntervalMs: field("loadIntervalMs", ms(100), raw.loadIntervalMs, 2_000),
    heartbeatIntervalMs: field("heartbeatIntervalMs", ms(100), raw.heartbeatIntervalMs, 5_000),
    firstByteTimeoutMs: field("firstByteTimeoutMs", ms(10), raw.firstByteTimeoutMs, 30_000),
    requestTimeoutMs: field("requestTimeoutMs", ms(10), raw.requestTimeoutMs, 600_000),
    retryBackoffMs,
    breakerFailures: field("breakerFailures", z.coerce.number().int().min(1), raw.breakerFailures, 5),
    breakerOpenMs: field("breakerOpenMs", ms(10), raw.breakerOpenMs, 60_000),
    drainGraceMs: field("drainGraceMs", ms(0), raw.drainGraceMs, 30_000),
    spot: {
      aws: field("spotAws", bool, raw.spotAws, false),
      gcp: field("spotGcp", bool, raw.spotGcp, false),
      azure: field("spotAzure", bool, raw.spotAzure, false),
      awsMetadataUrl: field("awsMetadataUrl", httpUrl, raw.awsMetadataUrl, "http://169.254.169.254"),
      gcpMetadataUrl: field("gcpMetadataUrl", httpUrl, raw.gcpMetadataUrl, "http://metadata.google.internal"),
      azureMetadataUrl: field("azureMetadataUrl", httpUrl, raw.azureMetadataUrl, "http://169.254.169.254"),
      pollIntervalMs: field("spotPollIntervalMs", ms(100), raw.spotPollIntervalMs, 5_000),
    },
    nvidiaSmiPath: field("nvidiaSmiPath", z.string().min(1), raw.nvidiaSmiPath, "nvidia-smi"),
    logLevel: field("logLevel", z.enum(["error", "warn", "info", "debug"]), raw.logLevel, "info"),
    tracing: tracingConfig(raw),
  };
}

/** Tracing's settings, or null when no endpoint is set. */
function tracingConfig(raw: RawConfig): TracingConfig | null {
  const endpoint = field("otelEndpoint", httpUrl.nullable(), raw.otelEndpoint, null);
  if (endpoint === null) return null;
  let headers: Record<string, string> = {};
  if (typeof raw.otelHeaders === "string") {
    try {
      headers = parseOtlpHeaders(raw.otelHeaders);
    } catch (err) {
      // A secret: the message names the entry, never its text.
      fail("otelHeaders", `must be key=value pairs separated by commas: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return {
    endpoint,
    ratio: field("otelSamplerRatio", z.coerce.number().min(0).max(1), raw.otelSamplerRatio, 0.1),
    serviceName: field("otelServiceName", z.string().trim().min(1), raw.otelServiceName, "switchyard-backplane"),
    headers,
    timeoutMs: field("otelTimeoutMs", ms(1), raw.otelTimeoutMs, 5_000),
  };
}

/** Reads raw settings from parsed flags (name without `--` → value) and the environment; flags win. */
export function rawFromFlagsAndEnv(flags: Record<string, string | string[] | boolean | undefined>, env: Record<string, string | undefined>): RawConfig {
  const raw: RawConfig = {};
  for (const [name, s] of Object.entries(SETTINGS) as [SettingName, (typeof SETTINGS)[SettingName]][]) {
    const fromFlag = flags[s.flag.slice(2)];
    if (name === "engines") {
      const specs = Array.isArray(fromFlag) ? fromFlag : typeof fromFlag === "string" ? [fromFlag] : undefined;
      raw.engines = specs ?? env[s.env];
      continue;
    }
    raw[name] = fromFlag ?? env[s.env];
  }
  return raw;
}
