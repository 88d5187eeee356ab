/**
 * Settings of `npm run serve`: flags first, the environment as the fallback, parsed once at start.
 * An invalid value stops the gateway with a message naming the setting.
 */
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { ROOT } from "./bundle.ts";

/** The self-hosted gateway's settings. */
export interface ServeSettings {
  host: string;
  port: number;
  /** Durable Object storage, the workerd config and, without `bundle`, the bundle built at start. */
  dataDir: string;
  /** A release folder (`npm run gateway -- build`); null bundles the checkout at start. */
  bundle: string | null;
  migrate: boolean;
  databaseUrl: string;
  redisUrl: string;
  /** The worker's secrets other than the database and Redis ones, which serve derives itself. */
  nodeSigningSecret: string;
  adminToken: string;
  stripeWebhookSecret: string;
  /** DASHBOARD_SECRET: the dashboard's SSO state and the tenants' OIDC client secrets at rest; empty turns single sign-on off. */
  dashboardSecret: string;
  /** OTLP exporter headers (docs/tracing.md), a secret: passed to the worker, never logged. */
  otlpHeaders: string;
  /** Overrides of wrangler.toml's `[vars]` (validated against the bundle's names at start). */
  vars: Record<string, string>;
  /** Time in-flight requests get to finish on SIGTERM before workerd is killed. */
  stopTimeoutMs: number;
  /** Test-only: fire `* * * * *` every this many ms instead of on the minute. */
  cronIntervalMs: number | null;
}

/** Thrown for a setting that is missing or invalid; the message names it and says what to do. */
export class SettingsError extends Error {
  override name = "SettingsError";
}

/** Help text of `npm run serve`. */
export const SERVE_HELP = `Usage: npm run serve -- [options]

Runs the Switchyard worker on plain workerd (no Cloudflare account) against a Postgres and a Redis,
with the Cron Triggers fired on schedule. Flags win over the environment.

Options:
  --host <addr>            listen address (GATEWAY_HOST, default 127.0.0.1)
  --port <n>               listen port (GATEWAY_PORT, default 8787)
  --data-dir <dir>         Durable Object storage and runtime files (GATEWAY_DATA_DIR, default .data/serve)
  --bundle <dir>           a release folder from \`npm run gateway -- build\` (GATEWAY_BUNDLE); without it the
                           checkout's worker is bundled at start (needs wrangler, takes a few seconds)
  --database-url <url>     postgres://… (DATABASE_URL, required)
  --redis-url <url>        redis://… or rediss://… (REDIS_URL, required)
  --var NAME=VALUE         override a wrangler.toml [vars] entry (repeatable); the environment's
                           variables of those names apply too
  --no-migrate             do not apply the migrations at start (GATEWAY_MIGRATE=false)
  --stop-timeout-ms <ms>   time in-flight requests get on SIGTERM (GATEWAY_STOP_TIMEOUT_MS, default 30000)
  --cron-interval-ms <ms>  TESTS ONLY: fire the every-minute cron this often instead of on the minute
  -h, --help               show this help

Secrets, from the environment only (so they never show in ps):
  NODE_SIGNING_SECRET      master secret of the node signing keys (required, at least 32 characters)
  ADMIN_TOKEN              the operator's bearer token for /admin (required, at least 32 characters)
  STRIPE_WEBHOOK_SECRET    whsec_… for POST /webhooks/stripe (optional; empty refuses every delivery)
  DASHBOARD_SECRET         the dashboard's single sign-on key (optional, at least 32 characters when set;
                           empty: sign-in with ADMIN_TOKEN or an admin key only, SSO cannot be configured).
                           Keep it: changing it makes the stored SSO client secrets unreadable
  OTEL_EXPORTER_OTLP_HEADERS  headers for the trace collector, e.g. "authorization=Bearer …" (optional, docs/tracing.md)
`;

const OPTIONS = {
  host: { type: "string" },
  port: { type: "string" },
  "data-dir": { type: "string" },
  bundle: { type: "string" },
  "database-url": { type: "string" },
  "redis-url": { type: "string" },
  var: { type: "string", multiple: true },
  "no-migrate": { type: "boolean" },
  "stop-timeout-ms": { type: "string" },
  "cron-interval-ms": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/** Parses argv; returns null when help was asked for. */
export function parseServeSettings(argv: string[], env: NodeJS.ProcessEnv): ServeSettings | null {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new SettingsError(`${err instanceof Error ? err.message : String(err)} (npm run serve -- --help lists the options)`);
  }
  if (values.help) return null;
  const pick = (flag: string | undefined, name: string) => (flag !== undefined && flag !== "" ? flag : env[name] !== undefined && env[name] !== "" ? env[name] : undefined);

  const databaseUrl = pick(values["database-url"], "DATABASE_URL");
  if (databaseUrl === undefined) throw new SettingsError("DATABASE_URL (or --database-url) is required: the Postgres of the gateway, e.g. postgres://switchyard:…@127.0.0.1:5432/switchyard");
  checkDatabaseUrl(databaseUrl);
  const redisUrl = pick(values["redis-url"], "REDIS_URL");
  if (redisUrl === undefined) throw new SettingsError("REDIS_URL (or --redis-url) is required: the Redis of the gateway, e.g. redis://127.0.0.1:6379");
  if (!/^rediss?:\/\//.test(redisUrl)) throw new SettingsError("REDIS_URL must start with redis:// or rediss://");

  // "optional" secrets may be empty; "key" ones too, but when set they are keys and need the length.
  const secret = (name: string, kind: "required" | "key" | "optional") => {
    const value = env[name] ?? "";
    if (kind === "required" && value.length < 32) throw new SettingsError(`${name} must be set to at least 32 characters (make one with: openssl rand -hex 32)`);
    if (kind === "key" && value !== "" && value.length < 32) throw new SettingsError(`${name} must be at least 32 characters when set (make one with: openssl rand -hex 32), or empty`);
    return value;
  };

  const vars: Record<string, string> = {};
  for (const entry of values.var ?? []) {
    const eq = entry.indexOf("=");
    const name = entry.slice(0, eq);
    if (eq <= 0 || !/^[A-Z][A-Z0-9_]*$/.test(name)) throw new SettingsError(`--var takes NAME=VALUE with an upper-case wrangler.toml var name, got ${JSON.stringify(entry)}`);
    vars[name] = entry.slice(eq + 1);
  }

  const migrateEnv = env.GATEWAY_MIGRATE?.toLowerCase();
  if (migrateEnv !== undefined && migrateEnv !== "" && !["true", "false", "1", "0"].includes(migrateEnv)) throw new SettingsError("GATEWAY_MIGRATE must be true or false");
  const bundle = pick(values.bundle, "GATEWAY_BUNDLE");
  const cronInterval = values["cron-interval-ms"];
  return {
    host: pick(values.host, "GATEWAY_HOST") ?? "127.0.0.1",
    port: integer("--port (GATEWAY_PORT)", pick(values.port, "GATEWAY_PORT") ?? "8787", 0, 65535),
    dataDir: resolve(pick(values["data-dir"], "GATEWAY_DATA_DIR") ?? resolve(ROOT, ".data/serve")),
    bundle: bundle === undefined ? null : resolve(bundle),
    migrate: !values["no-migrate"] && migrateEnv !== "false" && migrateEnv !== "0",
    databaseUrl,
    redisUrl,
    nodeSigningSecret: secret("NODE_SIGNING_SECRET", "required"),
    adminToken: secret("ADMIN_TOKEN", "required"),
    stripeWebhookSecret: secret("STRIPE_WEBHOOK_SECRET", "optional"),
    // Optional, so an installation whose env file predates the dashboard still starts after an upgrade.
    dashboardSecret: secret("DASHBOARD_SECRET", "key"),
    otlpHeaders: secret("OTEL_EXPORTER_OTLP_HEADERS", "optional"),
    vars,
    stopTimeoutMs: integer("--stop-timeout-ms (GATEWAY_STOP_TIMEOUT_MS)", pick(values["stop-timeout-ms"], "GATEWAY_STOP_TIMEOUT_MS") ?? "30000", 0, 3_600_000),
    cronIntervalMs: cronInterval === undefined ? null : integer("--cron-interval-ms", cronInterval, 100, 3_600_000),
  };
}

/**
 * The worker reaches Postgres through the in-process WebSocket pipe, which carries the wire protocol
 * as plain TCP: the Neon driver cannot do Postgres' in-protocol TLS over it (the worker's
 * platform/db.ts sets no `subtls`), so a URL asking for TLS would fail on every query.
 */
export function checkDatabaseUrl(url: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new SettingsError("DATABASE_URL is not a URL; expected postgres://user:password@host:5432/database");
  }
  if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") throw new SettingsError(`DATABASE_URL must start with postgres:// or postgresql://, got ${parsed.protocol}//`);
  if (parsed.hostname === "") throw new SettingsError("DATABASE_URL names no host");
  // node-postgres' URL parser (which the Neon driver shares) turns every sslmode but disable into TLS.
  const sslmode = parsed.searchParams.get("sslmode") ?? (parsed.searchParams.has("ssl") && parsed.searchParams.get("ssl") !== "false" ? "require" : null);
  if (sslmode !== null && sslmode !== "disable") {
    throw new SettingsError(
      `DATABASE_URL asks for sslmode=${sslmode}, which the self-hosted gateway cannot do: its Postgres pipe speaks plain TCP. Use a Postgres on this host or a private network and drop sslmode (docs/self-hosting.md#postgres-and-redis).`,
    );
  }
}

function integer(name: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) throw new SettingsError(`${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(text)}`);
  return value;
}
