import { join } from "node:path";
import { BackupError } from "./errors.ts";
import { runTool } from "./process.ts";

/** The PostgreSQL client programs this tool drives. */
export type PgTool = "pg_dump" | "pg_restore";

/** Where the client programs are and how to run them. */
export interface PgClient {
  /** Directory of pg_dump and pg_restore (--pg-bin); undefined: found on PATH. */
  binDir?: string;
  env: NodeJS.ProcessEnv;
}

/** A parsed PostgreSQL version. */
export interface PgVersion {
  /** As printed, e.g. "15.20". */
  text: string;
  major: number;
}

/** Deadline of `--version` probes. */
const PROBE_TIMEOUT_MS = 15_000;

/** The executable to run for `tool`. */
export function toolPath(client: PgClient, tool: PgTool): string {
  return client.binDir === undefined ? tool : join(client.binDir, tool);
}

/** What to install (and how to point this tool at it) for client programs of `major`. */
export function installHint(major: number | null): string {
  const version = major === null ? "<server major version>" : String(major);
  return (
    `Install the PostgreSQL ${version} client programs: on Debian or Ubuntu \`sudo apt-get install postgresql-client-${version}\` ` +
    `(from the PGDG repository, https://wiki.postgresql.org/wiki/Apt, when your release does not ship ${version}), ` +
    `then pass --pg-bin /usr/lib/postgresql/${version}/bin.`
  );
}

/** Parses "15.20" or "16beta2" (for 9.6 and older the major is reported as 9: nothing here compares below 10). */
export function parseVersion(text: string): PgVersion | null {
  const match = /(\d+)(?:\.\d+)*/.exec(text);
  if (match === null) return null;
  return { text: match[0], major: Number(match[1]) };
}

/** The version of `tool` (`<tool> --version`); a BackupError with an install hint when it is missing. */
export async function toolVersion(client: PgClient, tool: PgTool, wantedMajor: number | null): Promise<PgVersion> {
  const file = toolPath(client, tool);
  const { stdout } = await runTool(file, ["--version"], {
    what: `${tool} --version`,
    env: client.env,
    timeoutMs: PROBE_TIMEOUT_MS,
    redact: (text) => text,
    missingHint: installHint(wantedMajor),
  });
  // "pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"
  const version = parseVersion(stdout.replace(/^[^)]*\)/, ""));
  if (version === null) throw new BackupError("tool_failed", `${file} --version printed ${JSON.stringify(stdout.trim())}, not a PostgreSQL version; point --pg-bin at the PostgreSQL client programs.`);
  return version;
}

/** Throws unless the client program is at least `needed`'s major version. */
export function requireAtLeast(tool: PgTool, client: PgVersion, needed: PgVersion, of: string): void {
  if (client.major >= needed.major) return;
  throw new BackupError(
    "tool_too_old",
    `${tool} ${client.text} is older than ${of} (PostgreSQL ${needed.text}); ${tool} must be version ${needed.major} or newer. ${installHint(needed.major)}`,
  );
}
