/**
 * `gateway install-service`: a hardened systemd unit for `npm run serve` and the env file holding
 * its settings, modelled on the backplane's (backplane/src/ops/install-service.ts), whose quoting
 * helpers it shares.
 */
import { execFile } from "node:child_process";
import { dirname, isAbsolute, join } from "node:path";
import { promisify } from "node:util";
import { execCommand, exists, InstallServiceError, writeServiceFiles } from "../../backplane/src/ops/install-service.ts";

export { ensureSystemUser, execCommand, InstallServiceError } from "../../backplane/src/ops/install-service.ts";

/** Unit name and journal identifier. */
export const SERVICE_NAME = "switchyard-gateway";
export const DEFAULT_UNIT_DIR = "/etc/systemd/system";
export const DEFAULT_ENV_FILE = "/etc/switchyard/gateway.env";
/** Under /var/lib, so systemd's StateDirectory= creates it for the service user. */
export const DEFAULT_DATA_DIR = `/var/lib/${SERVICE_NAME}`;
export const DEFAULT_USER = "switchyard";
export const DEFAULT_MEMORY_MAX = "2G";
export const DEFAULT_CPU_QUOTA = "200%";
export const DEFAULT_LIMIT_NOFILE = 65536;
/** First restart delay; with the default start time (a release: 1 to 2 s) the kill test is back well within 10 s. */
const RESTART_SEC = 2;
/** systemd ≥ 254: the delay grows over this many restarts up to RESTART_MAX_DELAY_SEC. */
const RESTART_STEPS = 5;
const RESTART_MAX_DELAY_SEC = 30;
/** First systemd release with RestartSteps= and RestartMaxDelaySec=. */
export const RESTART_BACKOFF_SINCE = 254;
/** Time systemd allows past serve's own stop timeout before SIGKILL. */
const STOP_MARGIN_SECONDS = 15;

/** The settings the env file may hold: the ones `npm run serve` reads, nothing else. */
export const ENV_KEYS = [
  "DATABASE_URL",
  "REDIS_URL",
  "NODE_SIGNING_SECRET",
  "ADMIN_TOKEN",
  "STRIPE_WEBHOOK_SECRET",
  "DASHBOARD_SECRET",
  "OTEL_EXPORTER_OTLP_HEADERS",
  "GATEWAY_HOST",
  "GATEWAY_PORT",
  "GATEWAY_STOP_TIMEOUT_MS",
] as const;

/** Where and how the service runs. */
export interface GatewayUnitOptions {
  unitPath: string;
  envFile: string;
  /** The checkout (serve.ts and its node_modules). */
  workingDirectory: string;
  /** Absolute path of the Node binary. */
  nodePath: string;
  dataDir: string;
  /** null runs as root. */
  user: string | null;
  memoryMax: string;
  cpuQuota: string;
  limitNofile: number;
  /** Listen port (below 1024 the unit grants CAP_NET_BIND_SERVICE). */
  port: number;
  /** serve's --stop-timeout-ms; TimeoutStopSec= is this + 15 s. */
  stopTimeoutMs: number;
  /** systemd's version on the target (null: unknown, so no RestartSteps=). */
  systemdVersion: number | null;
}

function invalid(message: string): never {
  throw new InstallServiceError("invalid_option", message);
}

function checkPath(name: string, value: string): void {
  // eslint-disable-next-line no-control-regex -- finding control characters is the point of this check
  if (/[\0-\x1f\x7f"'\\]/.test(value) || /\s/.test(value)) invalid(`${name} must be one line without spaces, quotes or backslashes: ${JSON.stringify(value)}`);
  if (!isAbsolute(value)) invalid(`${name} must be an absolute path, got ${JSON.stringify(value)}`);
}

/** systemd expands %-specifiers in unit values; a literal % is written %%. */
const unitValue = (value: string) => value.replaceAll("%", "%%");

const underHome = (path: string) => ["/home", "/root", "/run/user"].some((dir) => path === dir || path.startsWith(`${dir}/`));
const underTmp = (path: string) => ["/tmp", "/var/tmp"].some((dir) => path === dir || path.startsWith(`${dir}/`));

/** The `StateDirectory=` name when the data folder is directly under /var/lib, else null. */
function stateDirectory(dataDir: string): string | null {
  const match = /^\/var\/lib\/([A-Za-z0-9._-]+)$/.exec(dataDir);
  return match?.[1] ?? null;
}

/** Renders the unit. Throws InstallServiceError for options systemd would misread. */
export function renderGatewayUnit(opts: GatewayUnitOptions): string {
  checkPath("--unit-dir", dirname(opts.unitPath));
  checkPath("--environment-file", opts.envFile);
  checkPath("--data-dir", opts.dataDir);
  checkPath("the checkout", opts.workingDirectory);
  checkPath("the node binary", opts.nodePath);
  if (opts.user !== null && !/^[a-z_][a-z0-9_-]{0,31}$/i.test(opts.user)) invalid(`--user must be a user name, got ${JSON.stringify(opts.user)}`);
  if (!/^(\d+(\.\d+)?[KMGT]?|\d{1,3}(\.\d+)?%|infinity)$/.test(opts.memoryMax)) invalid(`--memory-max must look like 2G, 512M, 80% or infinity, got ${JSON.stringify(opts.memoryMax)}`);
  if (!/^\d{1,5}%$/.test(opts.cpuQuota) || Number.parseInt(opts.cpuQuota, 10) === 0) invalid(`--cpu-quota must be a percentage of one CPU like 200%, got ${JSON.stringify(opts.cpuQuota)}`);
  if (!Number.isInteger(opts.limitNofile) || opts.limitNofile < 1024) invalid(`--limit-nofile must be a whole number of at least 1024, got ${opts.limitNofile}`);

  const release = join(opts.dataDir, "current");
  const execStart = execCommand([opts.nodePath, join(opts.workingDirectory, "worker/selfhost/serve.ts"), "--data-dir", opts.dataDir, "--bundle", release]);
  const state = stateDirectory(opts.dataDir);
  const needsHome = [opts.workingDirectory, opts.nodePath, opts.envFile, opts.dataDir].some(underHome);
  const backoff = opts.systemdVersion !== null && opts.systemdVersion >= RESTART_BACKOFF_SINCE;
  const lines = [
    "# Written by `npm run gateway -- install-service`. Settings live in the EnvironmentFile below (docs/self-hosting.md).",
    "[Unit]",
    "Description=Switchyard gateway (the worker on workerd, self-hosted)",
    "Documentation=file://" + unitValue(join(opts.workingDirectory, "docs/self-hosting.md")),
    "After=network-online.target",
    "Wants=network-online.target",
    // Restart=always means always: no start-rate limit that would leave it down after a bad minute.
    "StartLimitIntervalSec=0",
    "",
    "[Service]",
    "Type=exec",
    `ExecStart=${unitValue(execStart)}`,
    `WorkingDirectory=${unitValue(opts.workingDirectory)}`,
    `EnvironmentFile=${unitValue(opts.envFile)}`,
    ...(opts.user === null ? [] : [`User=${opts.user}`]),
    "Restart=always",
    `RestartSec=${RESTART_SEC}`,
    ...(backoff ? [`RestartSteps=${RESTART_STEPS}`, `RestartMaxDelaySec=${RESTART_MAX_DELAY_SEC}`] : []),
    // SIGTERM to serve alone: it stops the crons, lets workerd finish its requests, then the adapters.
    "KillMode=mixed",
    "KillSignal=SIGTERM",
    `TimeoutStopSec=${Math.ceil(opts.stopTimeoutMs / 1000) + STOP_MARGIN_SECONDS}`,
    "StandardOutput=journal",
    "StandardError=journal",
    `SyslogIdentifier=${SERVICE_NAME}`,
    "NoNewPrivileges=true",
    "ProtectSystem=strict",
    `ProtectHome=${needsHome ? "read-only" : "true"}`,
    "PrivateTmp=true",
    "PrivateDevices=true",
    "ProtectKernelTunables=true",
    "ProtectKernelModules=true",
    "ProtectControlGroups=true",
    "RestrictSUIDSGID=true",
    "LockPersonality=true",
    ...(state === null ? [] : [`StateDirectory=${state}`, "StateDirectoryMode=0750"]),
    `ReadWritePaths=${unitValue(opts.dataDir)}`,
    `MemoryMax=${opts.memoryMax}`,
    `CPUQuota=${opts.cpuQuota}`,
    `LimitNOFILE=${opts.limitNofile}`,
    ...(opts.port < 1024 && opts.user !== null ? ["AmbientCapabilities=CAP_NET_BIND_SERVICE"] : []),
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ];
  return lines.join("\n");
}

/**
 * The env file for EnvironmentFile= (and a shell's `source`): known keys only, every value
 * double-quoted with `\`, `"`, `` ` `` and `$` escaped, which systemd and sh both undo.
 */
export function renderGatewayEnvFile(values: Partial<Record<(typeof ENV_KEYS)[number], string>>): string {
  const lines = ["# Switchyard gateway settings, read by systemd (EnvironmentFile=). Holds secrets: keep mode 0600.", "# Every setting: docs/self-hosting.md#settings"];
  for (const key of ENV_KEYS) {
    const value = values[key];
    if (value === undefined) continue;
    // eslint-disable-next-line no-control-regex -- finding control characters is the point of this check
    if (/[\0-\x08\x0a-\x1f\x7f]/.test(value)) invalid(`${key} must not contain control characters`);
    lines.push(`${key}="${value.replace(/[\\"`$]/g, (c) => `\\${c}`)}"`);
  }
  return `${lines.join("\n")}\n`;
}

/** Never printed: `redactGatewayEnv` replaces them. */
export const SECRET_KEYS: ReadonlySet<(typeof ENV_KEYS)[number]> = new Set(["NODE_SIGNING_SECRET", "ADMIN_TOKEN", "STRIPE_WEBHOOK_SECRET", "DASHBOARD_SECRET", "OTEL_EXPORTER_OTLP_HEADERS"]);

/** The env values with secrets and URL passwords replaced, for printing. */
export function redactGatewayEnv(values: Partial<Record<(typeof ENV_KEYS)[number], string>>): Partial<Record<(typeof ENV_KEYS)[number], string>> {
  const out: Partial<Record<(typeof ENV_KEYS)[number], string>> = {};
  for (const key of ENV_KEYS) {
    const value = values[key];
    if (value === undefined) continue;
    if (SECRET_KEYS.has(key)) out[key] = value === "" ? "" : "<redacted>";
    else if (key.endsWith("_URL")) out[key] = value.replace(/^([a-z]+:\/\/[^:/@]*:)[^@]*@/i, "$1<redacted>@");
    else out[key] = value;
  }
  return out;
}

/** systemd's version from `systemctl --version` ("systemd 252 (252.38-1~deb12u1)"), or null when there is no systemd. */
export async function detectSystemdVersion(): Promise<number | null> {
  for (const tool of ["systemctl", "systemd-analyze"]) {
    try {
      const { stdout } = await promisify(execFile)(tool, ["--version"]);
      const match = /^systemd (\d+)/.exec(stdout);
      if (match?.[1] !== undefined) return Number(match[1]);
    } catch {
      // not installed: try the next
    }
  }
  return null;
}

/** What was (or would be) written. */
export interface GatewayInstallResult {
  unitPath: string;
  envFile: string;
  unit: string;
  /** The env file with secrets redacted, for printing. */
  envPreview: string;
  warnings: string[];
  commands: string[];
}

/** Sandbox trouble the options would run into (the checkout under /tmp or a home folder). */
export function gatewayWarnings(opts: Pick<GatewayUnitOptions, "workingDirectory" | "dataDir" | "systemdVersion">): string[] {
  const warnings: string[] = [];
  if (underTmp(opts.workingDirectory)) warnings.push(`The checkout ${opts.workingDirectory} is under /tmp, but the unit sets PrivateTmp=true: the service gets an empty /tmp of its own and will not find its code. Install from a folder like /opt/switchyard.`);
  if (underHome(opts.workingDirectory)) warnings.push(`The checkout ${opts.workingDirectory} is under a home folder, which ProtectHome= makes read-only (and the service user may not read it at all). Install from a folder like /opt/switchyard.`);
  if (underTmp(opts.dataDir)) warnings.push(`The data folder ${opts.dataDir} is under /tmp, which PrivateTmp=true replaces with a private, empty /tmp.`);
  if (opts.systemdVersion === null || opts.systemdVersion < RESTART_BACKOFF_SINCE) {
    warnings.push(`systemd ${opts.systemdVersion ?? "(not found)"} has no RestartSteps=/RestartMaxDelaySec= (since ${RESTART_BACKOFF_SINCE}): the unit restarts every ${RESTART_SEC} s without growing back-off.`);
  }
  return warnings;
}

/**
 * Writes the unit (0644) and the env file (0600 in a 0700 folder when it makes the folder). Refuses
 * before writing anything when either exists, unless `force`. Writes nothing with `dryRun`.
 */
export async function installGatewayService(
  opts: GatewayUnitOptions & { env: Partial<Record<(typeof ENV_KEYS)[number], string>>; dryRun?: boolean; force?: boolean },
): Promise<GatewayInstallResult> {
  const unit = renderGatewayUnit(opts);
  const envText = renderGatewayEnvFile(opts.env);
  const result: GatewayInstallResult = {
    unitPath: opts.unitPath,
    envFile: opts.envFile,
    unit,
    envPreview: renderGatewayEnvFile(redactGatewayEnv(opts.env)),
    warnings: gatewayWarnings(opts),
    commands: ["systemctl daemon-reload", `systemctl enable --now ${SERVICE_NAME}`, `journalctl -u ${SERVICE_NAME} -f`],
  };
  if (opts.dryRun) return result;
  if (!opts.force) await refuseExisting([opts.unitPath, opts.envFile]);
  await writeServiceFiles(opts.unitPath, unit, opts.envFile, envText);
  return result;
}

/** Throws InstallServiceError("file_exists") naming the paths that exist (the CLI checks before it creates a user or builds). */
export async function refuseExisting(paths: string[]): Promise<void> {
  const present = [];
  for (const path of paths) if (await exists(path)) present.push(path);
  if (present.length > 0) throw new InstallServiceError("file_exists", `${present.join(" and ")} already exist${present.length === 1 ? "s" : ""}; pass --force to overwrite.`);
}

