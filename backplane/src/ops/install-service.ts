import { execFile } from "node:child_process";
import { chmod, mkdir, open, rename, stat, unlink } from "node:fs/promises";
import { promisify } from "node:util";
import { basename, dirname, isAbsolute } from "node:path";

/**
 * `backplane install-service`: writes a hardened systemd unit and the env file holding the daemon's
 * BACKPLANE_* settings, and returns the systemctl commands that start it.
 */

/** Where and how the service runs. */
export interface ServiceOptions {
  unitPath: string;
  envFile: string;
  workingDirectory: string;
  /** Command line, in systemd's ExecStart= syntax (see `execCommand`); `%` is escaped here. */
  execStart: string;
  /** Run as this user (the CLI's default is DEFAULT_USER); null runs as root. */
  user: string | null;
  /** systemd MemoryMax=, e.g. 2G. */
  memoryMax: string;
  /** The only paths the service may write to (ProtectSystem=strict makes everything else read-only). */
  readWritePaths: string[];
  /** The daemon's drain grace; TimeoutStopSec= is this + 15 s (default 30 s, the daemon's default). */
  drainGraceMs?: number;
}

/** Thrown for options that cannot be installed; the message says what to change. */
export class InstallServiceError extends Error {
  override name = "InstallServiceError";
  readonly code: "invalid_option" | "file_exists";
  constructor(code: "invalid_option" | "file_exists", message: string) {
    super(message);
    this.code = code;
  }
}

/** Unit name and journal identifier. */
export const SERVICE_NAME = "switchyard-backplane";
export const DEFAULT_UNIT_PATH = `/etc/systemd/system/${SERVICE_NAME}.service`;
export const DEFAULT_ENV_FILE = "/etc/switchyard/backplane.env";
export const DEFAULT_MEMORY_MAX = "2G";
/** The dedicated system user the service runs as unless `--user` says otherwise (created when missing). */
export const DEFAULT_USER = "switchyard";
/** The daemon's default drain grace (config.ts). */
const DEFAULT_DRAIN_GRACE_MS = 30_000;
/** Time systemd allows past the drain grace for closing connections and exiting before it sends SIGKILL. */
const STOP_MARGIN_SECONDS = 15;

/** Help text of `backplane install-service`. */
export const SERVICE_HELP = `Usage: backplane install-service [settings…] [options]

Writes a systemd unit for the backplane and an env file (mode 0600) holding its settings, then prints
the commands that start it. The daemon's own settings (the same flags as \`backplane start\`, or their
BACKPLANE_* environment variables) are written into the env file.

Options:
  --unit-path <path>   unit file (default ${DEFAULT_UNIT_PATH})
  --environment-file <path>  env file with the settings, mode 0600 (default ${DEFAULT_ENV_FILE})
  --user <name>        run as this user (default: ${DEFAULT_USER}, a system user without login or home,
                       created with useradd when missing); --user root runs as root. Port 443 works
                       either way (CAP_NET_BIND_SERVICE)
  --memory-max <size>  systemd MemoryMax= (default ${DEFAULT_MEMORY_MAX})
  --force              overwrite an existing unit or env file
  --dry-run            print the unit and the env file (secrets redacted) and write nothing
  -h, --help           show this help

Then:
  systemctl daemon-reload
  systemctl enable --now ${SERVICE_NAME}
  journalctl -u ${SERVICE_NAME} -f
`;

function invalid(message: string): never {
  throw new InstallServiceError("invalid_option", message);
}

function checkLine(name: string, value: string): void {
  // A newline would end the directive and start another; a trailing backslash would continue the line.
  // eslint-disable-next-line no-control-regex -- finding control characters is the point of this check
  if (/[\0-\x1f\x7f]/.test(value) || value.endsWith("\\")) invalid(`${name} must be one line without control characters or a trailing backslash: ${JSON.stringify(value)}`);
}

function checkPath(name: string, value: string): void {
  checkLine(name, value);
  if (!isAbsolute(value)) invalid(`${name} must be an absolute path, got ${JSON.stringify(value)}`);
}

/** systemd expands %-specifiers in unit values; a literal % is written %%. */
const unitValue = (value: string) => value.replaceAll("%", "%%");

/** Quotes one word of a space-separated unit list (ExecStart=, ReadWritePaths=) when it needs it. */
function unitWord(word: string): string {
  return /[\s"'\\]/.test(word) || word === "" ? `"${word.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"` : word;
}

/** Builds an ExecStart= command line from argv: words quoted as systemd parses them, `$` kept literal. */
export function execCommand(argv: string[]): string {
  return argv.map((arg) => unitWord(arg.replaceAll("$", () => "$$"))).join(" ");
}

const HOME_DIRS = ["/home", "/root", "/run/user"];
const underHome = (path: string) => HOME_DIRS.some((dir) => path === dir || path.startsWith(`${dir}/`));

/** Renders the systemd unit. Throws InstallServiceError for options systemd would misread. */
export function renderUnit(opts: ServiceOptions): string {
  checkPath("--unit-path", opts.unitPath);
  if (!opts.unitPath.endsWith(".service")) invalid(`--unit-path must end in .service, got ${JSON.stringify(opts.unitPath)}`);
  checkPath("--environment-file", opts.envFile);
  checkPath("working directory", opts.workingDirectory);
  checkLine("ExecStart", opts.execStart);
  if (opts.execStart.trim() === "") invalid("ExecStart must not be empty");
  if (opts.user !== null && !/^[a-z_][a-z0-9_-]{0,31}$/i.test(opts.user)) invalid(`--user must be a user name, got ${JSON.stringify(opts.user)}`);
  if (!/^(\d+(\.\d+)?[KMGT]?|\d{1,3}(\.\d+)?%|infinity)$/.test(opts.memoryMax)) invalid(`--memory-max must look like 2G, 512M, 80% or infinity, got ${JSON.stringify(opts.memoryMax)}`);
  for (const path of opts.readWritePaths) {
    checkPath("read-write path", path);
    if (/["'\\]/.test(path)) invalid(`read-write path must not contain quotes or backslashes: ${JSON.stringify(path)}`);
  }
  const graceMs = opts.drainGraceMs ?? DEFAULT_DRAIN_GRACE_MS;
  if (!Number.isFinite(graceMs) || graceMs < 0) invalid(`drain grace must be a non-negative number of ms, got ${graceMs}`);

  // ProtectHome=true hides /home, /root and /run/user; a checkout under a home folder would then not
  // even start, so in that case the home folders are made read-only instead of inaccessible.
  const execPaths = opts.execStart.split(/\s+/).map((w) => w.replace(/^["']|["']$/g, ""));
  const needsHome = [opts.workingDirectory, opts.envFile, ...opts.readWritePaths, ...execPaths].some(underHome);

  const lines = [
    "# Written by `backplane install-service`. Settings live in the EnvironmentFile below.",
    "[Unit]",
    "Description=Switchyard backplane (GPU host daemon)",
    "After=network-online.target",
    "Wants=network-online.target",
    "",
    "[Service]",
    "Type=exec",
    `ExecStart=${unitValue(opts.execStart)}`,
    `WorkingDirectory=${unitValue(opts.workingDirectory)}`,
    `EnvironmentFile=${unitValue(opts.envFile)}`,
    ...(opts.user === null ? [] : [`User=${opts.user}`]),
    "Restart=always",
    "RestartSec=5",
    // SIGTERM starts the drain; systemd waits the drain grace plus a margin before SIGKILL.
    "KillSignal=SIGTERM",
    `TimeoutStopSec=${Math.ceil(graceMs / 1000) + STOP_MARGIN_SECONDS}`,
    "StandardOutput=journal",
    "StandardError=journal",
    `SyslogIdentifier=${SERVICE_NAME}`,
    "NoNewPrivileges=true",
    "ProtectSystem=strict",
    `ProtectHome=${needsHome ? "read-only" : "true"}`,
    "PrivateTmp=true",
    ...(opts.readWritePaths.length === 0 ? [] : [`ReadWritePaths=${opts.readWritePaths.map((p) => unitValue(unitWord(p))).join(" ")}`]),
    `MemoryMax=${opts.memoryMax}`,
    // Lets a non-root user listen on 443, the only port deployed Workers connect to.
    "AmbientCapabilities=CAP_NET_BIND_SERVICE",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ];
  return lines.join("\n");
}

/**
 * Renders an env file for systemd's EnvironmentFile= (and for a shell's `source`): every value is
 * double-quoted with `\`, `"`, `` ` `` and `$` backslash-escaped, which systemd (env-file.c) and sh both
 * undo, so spaces, quotes and `$` survive as written.
 */
export function renderEnvFile(values: Record<string, string>): string {
  const lines = ["# Switchyard backplane settings, read by systemd (EnvironmentFile=). Holds the node secret: keep mode 0600."];
  for (const [key, value] of Object.entries(values)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) invalid(`env name ${JSON.stringify(key)} is not a valid variable name`);
    // eslint-disable-next-line no-control-regex -- finding control characters is the point of this check
    if (/[\0-\x08\x0a-\x1f\x7f]/.test(value)) invalid(`env value of ${key} must not contain control characters`);
    lines.push(`${key}="${value.replace(/[\\"`$]/g, (c) => `\\${c}`)}"`);
  }
  return `${lines.join("\n")}\n`;
}

const SECRET_NAME = /SECRET|TOKEN|PASSWORD|API_KEY|OTLP_HEADERS/i;

/** The env values with secrets replaced, for printing (`--dry-run`). */
export function redactEnv(values: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(values).map(([key, value]) => [key, SECRET_NAME.test(key) ? "<redacted>" : value.replace(/(api-key=)[^,;]*/g, "$1<redacted>")]),
  );
}

/** Whether `path` exists (other errors than ENOENT are thrown). */
export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}

/** Writes `text` to `path` with `mode` through a temporary file and a rename, so a reader never sees half a file. */
export async function writeAtomic(path: string, text: string, mode: number): Promise<void> {
  const temp = `${path}.tmp-${process.pid}`;
  const handle = await open(temp, "wx", mode);
  try {
    await handle.writeFile(text, "utf8");
    // The umask may have cleared bits of `mode`; set it exactly.
    await handle.chmod(mode);
  } finally {
    await handle.close();
  }
  try {
    await rename(temp, path);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
}

/**
 * Settings that install but will not work as meant under the unit's sandbox: PrivateTmp=true gives
 * the service an empty /tmp of its own, so a checkout under /tmp is not there; ProtectHome makes a
 * checkout under /home read-only (and, for any other use of the folder, inaccessible).
 */
export function unitWarnings(opts: Pick<ServiceOptions, "workingDirectory" | "readWritePaths">): string[] {
  const warnings: string[] = [];
  const underTmp = (p: string) => p === "/tmp" || p.startsWith("/tmp/") || p === "/var/tmp" || p.startsWith("/var/tmp/");
  if (underTmp(opts.workingDirectory)) {
    warnings.push(`The working directory ${opts.workingDirectory} is under /tmp, but the unit sets PrivateTmp=true: the service gets an empty /tmp of its own and will not find its code. Install from a folder like /opt/switchyard.`);
  }
  if (underHome(opts.workingDirectory)) {
    warnings.push(`The working directory ${opts.workingDirectory} is under a home folder, which the unit's ProtectHome= makes read-only (and a --user other than its owner may not read it at all). Install from a folder like /opt/switchyard.`);
  }
  for (const path of opts.readWritePaths) {
    if (underTmp(path)) warnings.push(`The read-write path ${path} is under /tmp, which PrivateTmp=true replaces with a private, empty /tmp.`);
  }
  return warnings;
}

/**
 * Refuses TLS files that do not exist, naming the setting and the file: the daemon would otherwise
 * fail at start, under systemd, with only ENOENT in the journal.
 */
export async function checkTlsFiles(env: Record<string, string>): Promise<void> {
  for (const [name, flag] of [["BACKPLANE_TLS_CERT", "--tls-cert"], ["BACKPLANE_TLS_KEY", "--tls-key"]] as const) {
    const path = env[name];
    if (path === undefined || path === "") continue;
    if (!isAbsolute(path)) invalid(`${flag} (${name}) must be an absolute path for the service, got ${JSON.stringify(path)}`);
    let isFile = false;
    try {
      isFile = (await stat(path)).isFile();
    } catch {
      invalid(`${flag} (${name}): the file ${path} does not exist or cannot be read.`);
    }
    if (!isFile) invalid(`${flag} (${name}): ${path} is not a file.`);
  }
}

const run = promisify(execFile);

/**
 * Makes sure the system user `name` exists: `id -u` first, else `useradd --system --no-create-home
 * --shell /usr/sbin/nologin`. Needs root to create it.
 */
export async function ensureSystemUser(name: string): Promise<"exists" | "created"> {
  try {
    await run("id", ["-u", name]);
    return "exists";
  } catch {
    await run("useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name]);
    return "created";
  }
}

/** What installService wrote (or would write), and the commands that start the service. */
export interface InstallResult {
  unitPath: string;
  envFile: string;
  /** Settings that will not work as meant under the unit's sandbox (see unitWarnings). */
  warnings: string[];
  commands: string[];
  /** The unit text, and the env file with secrets redacted, for printing. */
  preview: { unit: string; envFile: string };
}

/**
 * Writes the unit (0644) and the env file (0600, its folder created 0700 when missing). Refuses, before
 * writing anything, when either file exists, unless `force`. With `dryRun` it writes nothing. The env
 * file stays owned by the installing user (root): systemd reads it before dropping to `User=`.
 */
export async function installService(
  opts: ServiceOptions & {
    env: Record<string, string>;
    dryRun?: boolean;
    force?: boolean;
    /** Called (not on a dry run) before anything is written, to create `user` when missing (the CLI passes ensureSystemUser). */
    ensureUser?: (name: string) => Promise<unknown>;
  },
): Promise<InstallResult> {
  await checkTlsFiles(opts.env);
  const fromEnv = Number(opts.env.BACKPLANE_DRAIN_GRACE_MS);
  const drainGraceMs = opts.drainGraceMs ?? (opts.env.BACKPLANE_DRAIN_GRACE_MS && Number.isFinite(fromEnv) ? fromEnv : DEFAULT_DRAIN_GRACE_MS);
  const unit = renderUnit({ ...opts, drainGraceMs });
  const envText = renderEnvFile(opts.env);
  const name = basename(opts.unitPath, ".service");
  const commands = ["systemctl daemon-reload", `systemctl enable --now ${name}`, `journalctl -u ${name} -f`];
  const result: InstallResult = {
    unitPath: opts.unitPath,
    envFile: opts.envFile,
    warnings: unitWarnings(opts),
    commands,
    preview: { unit, envFile: renderEnvFile(redactEnv(opts.env)) },
  };
  if (opts.dryRun) return result;
  if (opts.user !== null && opts.user !== "root" && opts.ensureUser) await opts.ensureUser(opts.user);

  if (!opts.force) {
    const present = [];
    for (const path of [opts.unitPath, opts.envFile]) if (await exists(path)) present.push(path);
    if (present.length > 0) {
      throw new InstallServiceError("file_exists", `${present.join(" and ")} already exist${present.length === 1 ? "s" : ""}; pass --force to overwrite.`);
    }
  }
  await writeServiceFiles(opts.unitPath, unit, opts.envFile, envText);
  return result;
}

/**
 * Writes a service's env file (mode 0600, its folder 0700 when created) and its unit (0644), each
 * atomically; shared with the self-hosted gateway's install-service.
 */
export async function writeServiceFiles(unitPath: string, unit: string, envFile: string, envText: string): Promise<void> {
  const envDir = dirname(envFile);
  if (!(await exists(envDir))) {
    await mkdir(envDir, { recursive: true, mode: 0o700 });
    await chmod(envDir, 0o700);
  }
  await mkdir(dirname(unitPath), { recursive: true, mode: 0o755 });
  await writeAtomic(envFile, envText, 0o600);
  await writeAtomic(unitPath, unit, 0o644);
}
