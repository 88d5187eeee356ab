/**
 * `npm run gateway -- <command>`: operating the self-hosted gateway (docs/self-hosting.md).
 * `build` makes a release, `activate` switches to one (upgrade or rollback), `releases` lists them,
 * `install-service` writes the systemd unit and its env file. Exits 2 on a usage mistake, 1 when
 * the command failed.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { parseArgs, promisify } from "node:util";
import { ROOT } from "./bundle.ts";
import {
  DEFAULT_CPU_QUOTA,
  DEFAULT_DATA_DIR,
  DEFAULT_ENV_FILE,
  DEFAULT_LIMIT_NOFILE,
  DEFAULT_MEMORY_MAX,
  DEFAULT_UNIT_DIR,
  DEFAULT_USER,
  detectSystemdVersion,
  ensureSystemUser,
  installGatewayService,
  InstallServiceError,
  refuseExisting,
  SERVICE_NAME,
} from "./install-service.ts";
import { activateRelease, buildRelease, currentLink, listReleases, ReleaseError } from "./release.ts";
import { checkDatabaseUrl, SettingsError } from "./settings.ts";

const HELP = `Usage: npm run gateway -- <command> [options]

Commands:
  build [--data-dir <dir>] [--version <v>] [--activate]
      Bundle this checkout's worker into <data dir>/releases/<version> (default version: UTC time and
      commit), with wrangler.toml's settings and the migrations. --activate makes it the current one.
  activate <version> [--data-dir <dir>]
      Point <data dir>/current at releases/<version> (an upgrade or a rollback); then restart the service.
  releases [--data-dir <dir>]
      List the releases, the current one marked.
  install-service [options]
      Write the systemd unit ${DEFAULT_UNIT_DIR}/${SERVICE_NAME}.service and its env file (mode 0600),
      build and activate the first release when there is none, and print the commands that start it.
      --user <name>           run as this user (default ${DEFAULT_USER}, a system user created when missing; root runs as root)
      --environment-file <path>  the env file, mode 0600 (default ${DEFAULT_ENV_FILE}; not --env-file,
                              which Node itself takes wherever it appears)
      --unit-dir <dir>        default ${DEFAULT_UNIT_DIR}
      --data-dir <dir>        releases and Durable Object storage (default ${DEFAULT_DATA_DIR})
      --database-url <url>    written as DATABASE_URL (default: $DATABASE_URL; required)
      --redis-url <url>       written as REDIS_URL (default: $REDIS_URL; required)
      --host <addr>, --port <n>   GATEWAY_HOST, GATEWAY_PORT (default 127.0.0.1, 8787)
      --memory-max <size>     MemoryMax= (default ${DEFAULT_MEMORY_MAX})
      --cpu-quota <pct>       CPUQuota= (default ${DEFAULT_CPU_QUOTA})
      --limit-nofile <n>      LimitNOFILE= (default ${DEFAULT_LIMIT_NOFILE})
      --stop-timeout-ms <ms>  GATEWAY_STOP_TIMEOUT_MS (default 30000); TimeoutStopSec= is this + 15 s
      --no-build              do not build a release (serve needs <data dir>/current)
      --force                 overwrite an existing unit or env file
      --dry-run               print the unit and the env file (secrets redacted), write nothing
      NODE_SIGNING_SECRET, ADMIN_TOKEN, STRIPE_WEBHOOK_SECRET, DASHBOARD_SECRET and
      OTEL_EXPORTER_OTLP_HEADERS are taken from the environment; NODE_SIGNING_SECRET, ADMIN_TOKEN and
      DASHBOARD_SECRET (the dashboard's single sign-on key) are generated when unset.

The default data dir of build, activate and releases is $GATEWAY_DATA_DIR, else .data/serve.
`;

class UsageError extends Error {}

const run = promisify(execFile);

function dataDirOf(flag: string | undefined): string {
  return resolve(flag ?? process.env.GATEWAY_DATA_DIR ?? join(ROOT, ".data/serve"));
}

async function build(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { "data-dir": { type: "string" }, version: { type: "string" }, activate: { type: "boolean" } }, strict: true });
  const dataDir = dataDirOf(values["data-dir"]);
  console.log("Bundling the worker (wrangler deploy --dry-run)…");
  const release = await buildRelease({ dataDir, version: values.version });
  console.log(`Built release ${release.version} in ${release.dir}`);
  if (values.activate) {
    const previous = await activateRelease(dataDir, release.version);
    console.log(`Activated it (${currentLink(dataDir)} → releases/${release.version}; was ${previous ?? "none"}).`);
    console.log(`Restart the gateway to serve it: systemctl restart ${SERVICE_NAME}`);
  } else {
    console.log(`Serve it with: npm run gateway -- activate ${release.version} --data-dir ${dataDir} && systemctl restart ${SERVICE_NAME}`);
  }
}

async function activate(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, options: { "data-dir": { type: "string" } }, strict: true, allowPositionals: true });
  const [version, ...rest] = positionals;
  if (version === undefined || rest.length > 0) throw new UsageError("activate takes one release version (npm run gateway -- releases lists them)");
  const dataDir = dataDirOf(values["data-dir"]);
  const previous = await activateRelease(dataDir, version);
  console.log(`${currentLink(dataDir)} → releases/${version} (was ${previous ?? "none"}).`);
  console.log(`Restart the gateway to serve it: systemctl restart ${SERVICE_NAME}`);
}

async function releases(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { "data-dir": { type: "string" } }, strict: true });
  const dataDir = dataDirOf(values["data-dir"]);
  const list = await listReleases(dataDir);
  if (list.length === 0) console.log(`No releases under ${dataDir}/releases (npm run gateway -- build --data-dir ${dataDir} --activate makes one).`);
  for (const r of list) console.log(`${r.current ? "*" : " "} ${r.version}  built ${r.builtAt}`);
}

async function installService(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      user: { type: "string" },
      "environment-file": { type: "string" },
      "unit-dir": { type: "string" },
      "data-dir": { type: "string" },
      "database-url": { type: "string" },
      "redis-url": { type: "string" },
      host: { type: "string" },
      port: { type: "string" },
      "memory-max": { type: "string" },
      "cpu-quota": { type: "string" },
      "limit-nofile": { type: "string" },
      "stop-timeout-ms": { type: "string" },
      "systemd-version": { type: "string" },
      "no-build": { type: "boolean" },
      force: { type: "boolean" },
      "dry-run": { type: "boolean" },
    },
    strict: true,
  });
  const whole = (name: string, text: string, min: number, max: number) => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(text)}`);
    return n;
  };
  const databaseUrl = values["database-url"] ?? process.env.DATABASE_URL;
  if (databaseUrl === undefined || databaseUrl === "") throw new UsageError("pass --database-url (or set DATABASE_URL): the Postgres the gateway will use");
  checkDatabaseUrl(databaseUrl);
  const redisUrl = values["redis-url"] ?? process.env.REDIS_URL;
  if (redisUrl === undefined || !/^rediss?:\/\//.test(redisUrl)) throw new UsageError("pass --redis-url redis://… (or set REDIS_URL): the Redis the gateway will use");
  const port = whole("--port", values.port ?? "8787", 1, 65535);
  const stopTimeoutMs = whole("--stop-timeout-ms", values["stop-timeout-ms"] ?? "30000", 0, 3_600_000);
  const userName = values.user ?? DEFAULT_USER;
  const user = userName === "root" ? null : userName;
  const dataDir = resolve(values["data-dir"] ?? DEFAULT_DATA_DIR);
  const systemdVersion = values["systemd-version"] === undefined ? await detectSystemdVersion() : whole("--systemd-version", values["systemd-version"], 1, 10_000);

  const generated: string[] = [];
  const secret = (name: string) => {
    const given = process.env[name];
    // serve would refuse a short one at every start: better said now.
    if (given !== undefined && given !== "" && given.length < 32) throw new UsageError(`${name} must be at least 32 characters (make one with: openssl rand -hex 32), or unset to generate one`);
    if (given !== undefined && given !== "") return given;
    generated.push(name);
    return randomBytes(32).toString("hex");
  };
  const env = {
    DATABASE_URL: databaseUrl,
    REDIS_URL: redisUrl,
    NODE_SIGNING_SECRET: secret("NODE_SIGNING_SECRET"),
    ADMIN_TOKEN: secret("ADMIN_TOKEN"),
    STRIPE_WEBHOOK_SECRET: process.env.STRIPE_WEBHOOK_SECRET ?? "",
    // Generated like the other keys, so a new installation can set up single sign-on in the dashboard.
    DASHBOARD_SECRET: secret("DASHBOARD_SECRET"),
    ...(process.env.OTEL_EXPORTER_OTLP_HEADERS ? { OTEL_EXPORTER_OTLP_HEADERS: process.env.OTEL_EXPORTER_OTLP_HEADERS } : {}),
    GATEWAY_HOST: values.host ?? "127.0.0.1",
    GATEWAY_PORT: String(port),
    GATEWAY_STOP_TIMEOUT_MS: String(stopTimeoutMs),
  };
  const dryRun = values["dry-run"] ?? false;
  const options = {
    unitPath: join(resolve(values["unit-dir"] ?? DEFAULT_UNIT_DIR), `${SERVICE_NAME}.service`),
    envFile: resolve(values["environment-file"] ?? DEFAULT_ENV_FILE),
    workingDirectory: ROOT,
    nodePath: process.execPath,
    dataDir,
    user,
    memoryMax: values["memory-max"] ?? DEFAULT_MEMORY_MAX,
    cpuQuota: values["cpu-quota"] ?? DEFAULT_CPU_QUOTA,
    limitNofile: whole("--limit-nofile", values["limit-nofile"] ?? String(DEFAULT_LIMIT_NOFILE), 1024, 1 << 30),
    port,
    stopTimeoutMs,
    systemdVersion,
    env,
    dryRun,
    force: values.force ?? false,
  };
  // A dry run renders first, so a bad option is reported before a user is created or a release built.
  const preview = await installGatewayService({ ...options, dryRun: true });
  if (!dryRun) {
    if (!options.force) await refuseExisting([options.unitPath, options.envFile]);
    if (user !== null) console.log(`Service user ${user}: ${await ensureSystemUser(user)}.`);
    await mkdir(dataDir, { recursive: true, mode: 0o750 });
    if (!values["no-build"] && !existsSync(currentLink(dataDir))) {
      console.log("Building the first release (wrangler deploy --dry-run)…");
      const release = await buildRelease({ dataDir });
      await activateRelease(dataDir, release.version);
      console.log(`Release ${release.version} built and activated.`);
    }
    // The service user owns its data (systemd's StateDirectory= would do it at start for /var/lib/<name>).
    if (user !== null) await run("chown", ["-R", `${user}:`, dataDir]);
  }
  const result = dryRun ? preview : await installGatewayService(options);

  console.log(dryRun ? `Would write ${result.unitPath}:` : `Wrote ${result.unitPath}:`);
  console.log(result.unit);
  console.log(dryRun ? `Would write ${result.envFile} (mode 0600; secrets redacted here):` : `Wrote ${result.envFile} (mode 0600; secrets redacted here):`);
  console.log(result.envPreview);
  if (generated.length > 0) console.log(`Generated ${generated.join(", ")} (not set in the environment); ${dryRun ? "a real run writes them" : "they are"} in ${result.envFile}.`);
  for (const warning of result.warnings) console.log(`Warning: ${warning}`);
  console.log("Next:");
  for (const command of result.commands) console.log(`  ${command}`);
  console.log(`  curl http://${env.GATEWAY_HOST === "0.0.0.0" ? "127.0.0.1" : env.GATEWAY_HOST}:${port}/health?deep=1`);
}

const COMMANDS: Record<string, (argv: string[]) => Promise<void>> = { build, activate, releases, "install-service": installService };

const [command, ...rest] = process.argv.slice(2);
if (command === undefined || command === "--help" || command === "-h" || command === "help") {
  process.stdout.write(HELP);
  process.exit(command === undefined ? 2 : 0);
}
const handler = COMMANDS[command];
if (handler === undefined) {
  process.stderr.write(`gateway: unknown command ${JSON.stringify(command)}\n\n${HELP}`);
  process.exit(2);
}
try {
  await handler(rest);
} catch (err) {
  const usage = err instanceof UsageError || err instanceof SettingsError || (err instanceof Error && "code" in err && typeof err.code === "string" && err.code.startsWith("ERR_PARSE_ARGS"));
  const known = usage || err instanceof ReleaseError || err instanceof InstallServiceError;
  process.stderr.write(`gateway ${command}: ${known && err instanceof Error ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(usage ? 2 : 1);
}
