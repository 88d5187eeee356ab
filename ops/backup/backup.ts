import { chmod, mkdir, open, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { parseDatabaseUrl, serverVersion, withClient, withoutPassword } from "./database.ts";
import { BackupError } from "./errors.ts";
import { installHint, requireAtLeast, toolPath, toolVersion, type PgClient, type PgVersion } from "./pg-tools.ts";
import { runTool } from "./process.ts";
import { maskUrl, redactor, urlPassword } from "./redact.ts";
import { backupFileName, partialFileName, pruneBackups, type PrunedFile } from "./retention.ts";

/** What `db:backup` needs; built by main.ts. */
export interface BackupOptions {
  databaseUrl: string;
  /** Folder of the dumps (created 0700 when missing). */
  dir: string;
  /** Dumps older than this many days are deleted after a successful backup; 0 keeps them all. */
  retentionDays: number;
  client: PgClient;
  /** Deadline of pg_dump. */
  timeoutMs: number;
  /** Told about a setting that works but is not advised (printed on stderr by main.ts). */
  warn: (line: string) => void;
  now?: () => Date;
}

/** What a backup wrote and removed. */
export interface BackupResult {
  file: string;
  bytes: number;
  /** The database, password masked. */
  source: string;
  server: PgVersion;
  pgDump: PgVersion;
  retentionDays: number;
  pruned: PrunedFile[];
}

/**
 * Dumps the database with pg_dump in its custom format (compressed; pg_restore can list it and pick
 * from it) to `<dir>/switchyard-<UTC time>.dump`: written to a temp file of mode 0600, flushed to
 * disk and renamed, so a dump under that name is always complete. Then applies the retention. A
 * failed backup deletes nothing.
 */
export async function runBackup(opts: BackupOptions): Promise<BackupResult> {
  const now = opts.now ?? (() => new Date());
  const parsed = parseDatabaseUrl(opts.databaseUrl, "DATABASE_URL");
  // Neon: "Avoid using pg_dump over a pooled connection string" (PgBouncer in transaction mode).
  if (parsed.hostname.includes("-pooler.")) {
    opts.warn(`Warning: ${parsed.hostname} is Neon's pooled endpoint; Neon advises pg_dump over the direct connection string (the same host without "-pooler").`);
  }
  const redact = redactor([opts.databaseUrl]);
  const server = await withClient(opts.databaseUrl, serverVersion);
  if (server === null) throw new BackupError("database", `The database of ${maskUrl(opts.databaseUrl)} does not exist.`);
  const pgDump = await toolVersion(opts.client, "pg_dump", server.major);
  // pg_dump refuses a server of a newer major version; say what to install before it does.
  requireAtLeast("pg_dump", pgDump, server, "the server");

  await mkdir(opts.dir, { recursive: true, mode: 0o700 });
  const name = backupFileName(now());
  const file = join(opts.dir, name);
  const partial = join(opts.dir, partialFileName(name));
  try {
    // Created before pg_dump opens it, so the dump is never readable by others, even for a moment.
    await (await open(partial, "wx", 0o600)).close();
    const password = urlPassword(opts.databaseUrl);
    await runTool(toolPath(opts.client, "pg_dump"), ["--format=custom", "--no-password", `--file=${partial}`, `--dbname=${withoutPassword(opts.databaseUrl)}`], {
      what: "pg_dump",
      env: { ...opts.client.env, ...(password === "" ? {} : { PGPASSWORD: password }), PGCONNECT_TIMEOUT: "10" },
      timeoutMs: opts.timeoutMs,
      redact,
      missingHint: installHint(server.major),
    });
    const handle = await open(partial, "r+");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    await chmod(partial, 0o600);
    await rename(partial, file);
    await syncDir(opts.dir);
  } catch (err) {
    await rm(partial, { force: true });
    throw err;
  }
  const { size } = await stat(file);
  const pruned = await pruneBackups(opts.dir, opts.retentionDays, now());
  return { file, bytes: size, source: maskUrl(opts.databaseUrl), server, pgDump, retentionDays: opts.retentionDays, pruned };
}

/** Makes the rename durable (the directory entry), where the platform allows fsync on a directory. */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } catch {
    // Some platforms and file systems refuse fsync on a directory; the rename itself is still atomic.
  } finally {
    await handle.close();
  }
}
