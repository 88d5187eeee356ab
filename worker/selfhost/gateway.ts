/**
 * The self-hosted gateway: the worker under plain workerd with its state adapters in this process
 * (the Neon driver's WebSocket pipe to Postgres, the Upstash-REST adapter in front of Redis, both on
 * loopback), Durable Objects on local disk, and the Cron Triggers fired by a timer.
 */
import { randomBytes } from "node:crypto";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { migrate } from "drizzle-orm/node-postgres/migrator";
import { MIGRATIONS_FOLDER, openDb } from "../../dev/db.ts";
import { startNeonWsPipe, type NeonWsPipe } from "../../dev/neon-ws-pipe.ts";
import { waitForHttp } from "../../dev/ports.ts";
import { checkRedis, redactUrl } from "../../dev/redis.ts";
import { startUpstashRestAdapter, type UpstashRestAdapter } from "../../dev/upstash-rest.ts";
import { bundleWorker, readWorkerConfig, type WorkerBundle, type WorkerConfig } from "./bundle.ts";
import { CronScheduler, MINUTE_CRON, type CronLog } from "./cron.ts";
import { readRelease } from "./release.ts";
import { SettingsError, type ServeSettings } from "./settings.ts";
import { startWorkerd, type Workerd } from "./workerd.ts";

/** One JSON line per event (journald under systemd); fields are never secrets. */
export type GatewayLog = CronLog;

/** The gateway, running. */
export interface Gateway {
  /** `http://host:port` the worker listens on. */
  readonly url: string;
  readonly workerd: Workerd;
  /** Version of the release served, or null for a bundle built at start. */
  readonly release: string | null;
  /** Resolves when workerd exits by itself (not through `close()`), with its code and signal. */
  readonly unexpectedExit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Stops the crons (waiting for a run that is going), workerd (letting requests finish), then the pipe and the adapter. Safe to call twice. */
  close(): Promise<void>;
}

/** Vars the serve process sets itself: an override would cut the worker off from Postgres. */
const OWN_VARS = new Set(["NEON_WS_PROXY"]);

/**
 * The worker's vars: wrangler.toml's, then the environment's values of those names, then `--var`.
 * A `--var` naming no wrangler.toml var is refused (a typo would otherwise be silently ignored).
 */
export function workerVars(config: WorkerConfig, environment: Record<string, string | undefined>, overrides: Record<string, string>): Record<string, string> {
  const vars = { ...config.vars };
  for (const name of Object.keys(config.vars)) {
    const value = environment[name];
    if (value !== undefined && !OWN_VARS.has(name)) vars[name] = value;
  }
  for (const [name, value] of Object.entries(overrides)) {
    if (!(name in config.vars)) throw new SettingsError(`--var ${name}: wrangler.toml has no such var (docs/configuration.md lists them)`);
    if (OWN_VARS.has(name)) throw new SettingsError(`--var ${name}: set by the serve process itself (it points the worker at its Postgres pipe)`);
    vars[name] = value;
  }
  return vars;
}

/** Starts everything; resolves once `/health?deep=1` answers (the worker reached Redis and Postgres). */
export async function startGateway(settings: ServeSettings, environment: Record<string, string | undefined>, log: GatewayLog): Promise<Gateway> {
  const cleanups: (() => Promise<void>)[] = [];
  let closing: Promise<void> | null = null;
  const close = () =>
    (closing ??= (async () => {
      for (const cleanup of cleanups.reverse()) {
        await cleanup().catch((err: unknown) => log("warn", "gateway.stop_failed", { error: err instanceof Error ? err.message : String(err) }));
      }
    })());

  try {
    await checkRedis(settings.redisUrl);

    let bundle: WorkerBundle;
    let config: WorkerConfig;
    let migrationsDir = MIGRATIONS_FOLDER;
    let release: string | null = null;
    if (settings.bundle !== null) {
      const read = await readRelease(settings.bundle);
      ({ bundle, config, migrationsDir } = read);
      release = read.version;
      log("info", "gateway.release", { version: read.version, built_at: read.builtAt, dir: read.dir });
    } else {
      log("info", "gateway.bundling", { note: "no --bundle: bundling the checkout's worker (npm run gateway -- build makes a release that starts faster)" });
      const out = join(settings.dataDir, "run", "bundle");
      // bundleWorker lists every file of its folder: a previous bundle's leftovers must go first.
      await rm(out, { recursive: true, force: true });
      [bundle, config] = await Promise.all([bundleWorker(out), readWorkerConfig()]);
    }
    const vars = workerVars(config, environment, settings.vars);

    if (settings.migrate) {
      const started = Date.now();
      const db = openDb(settings.databaseUrl);
      try {
        await migrate(db.db, { migrationsFolder: migrationsDir });
      } catch (err) {
        throw new Error(`migrations failed on ${redactUrl(settings.databaseUrl)}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      } finally {
        await db.close();
      }
      log("info", "gateway.migrated", { database: redactUrl(settings.databaseUrl), duration_ms: Date.now() - started });
    }

    // A fresh token at every start; it never leaves this process and workerd's private config.
    const redisToken = randomBytes(32).toString("hex");
    const upstash: UpstashRestAdapter = await startUpstashRestAdapter({ redisUrl: settings.redisUrl, token: redisToken, host: "127.0.0.1" });
    cleanups.push(() => upstash.close());
    const databaseHost = new URL(settings.databaseUrl).hostname.replace(/^\[|\]$/g, "");
    const pipe: NeonWsPipe = await startNeonWsPipe({ host: "127.0.0.1", allowedHosts: [databaseHost] });
    cleanups.push(() => pipe.close());

    const secrets: Record<string, string> = {
      DATABASE_URL: settings.databaseUrl,
      UPSTASH_REDIS_REST_URL: upstash.url,
      UPSTASH_REDIS_REST_TOKEN: redisToken,
      NODE_SIGNING_SECRET: settings.nodeSigningSecret,
      ADMIN_TOKEN: settings.adminToken,
      STRIPE_WEBHOOK_SECRET: settings.stripeWebhookSecret,
      // Empty is allowed: the dashboard then signs in with tokens only and refuses to set up SSO (503 not_configured).
      DASHBOARD_SECRET: settings.dashboardSecret,
      ...(settings.otlpHeaders ? { OTEL_EXPORTER_OTLP_HEADERS: settings.otlpHeaders } : {}),
    };
    const missing = config.requiredSecrets.filter((name) => !(name in secrets));
    if (missing.length > 0) throw new Error(`wrangler.toml requires secrets the serve process does not provide: ${missing.join(", ")}`);
    if (settings.dashboardSecret === "") log("info", "gateway.dashboard_sso_off", { note: "DASHBOARD_SECRET is not set: the dashboard signs in with ADMIN_TOKEN or admin keys only; single sign-on cannot be configured (docs/self-hosting.md#settings)" });

    const workerd = await startWorkerd({
      name: config.name,
      modules: bundle.modules,
      bindings: { ...vars, NEON_WS_PROXY: pipe.wsProxy, ...secrets },
      durableObjects: config.durableObjects,
      durableObjectDir: join(settings.dataDir, "durable-objects"),
      compatibilityDate: config.compatibilityDate,
      compatibilityFlags: config.compatibilityFlags,
      host: settings.host,
      port: settings.port,
      scheduled: true,
      dir: join(settings.dataDir, "run", "workerd"),
      output: "inherit",
      stopTimeoutMs: settings.stopTimeoutMs,
      // Behind a TLS-terminating proxy the browser's Origin is https://…: the dashboard's same-origin
      // check on every form, its Secure cookies and the SSO redirect URL need the worker to see https too.
      forwardedProtoHeader: "X-Forwarded-Proto",
    });
    let stopping = false;
    cleanups.push(async () => {
      stopping = true;
      await workerd.close();
    });
    const unexpectedExit = workerd.exited.then((exit) => (stopping ? new Promise<never>(() => {}) : exit));

    const localHost = settings.host === "0.0.0.0" ? "127.0.0.1" : settings.host === "::" ? "[::1]" : settings.host.includes(":") ? `[${settings.host}]` : settings.host;
    await waitForHttp(`http://${localHost}:${workerd.port}/health?deep=1`, 30_000, () => workerd.alive());

    const cron = new CronScheduler({ run: (c, at) => workerd.runScheduled(c, at), log, intervalMs: settings.cronIntervalMs });
    // Closed before workerd (cleanups run in reverse), so a run that is going finishes first.
    cleanups.push(() => cron.close());
    cron.start();
    // As a Cloudflare deployment's first cron: builds the active-key set and seeds the budget counters.
    void cron.tick(MINUTE_CRON, new Date());

    return { url: workerd.url, workerd, release, unexpectedExit, close };
  } catch (err) {
    await close();
    throw err;
  }
}
