import { stat } from "node:fs/promises";
import { databaseName, parseDatabaseUrl, quoteIdent, serverVersion, userTables, withClient, withDatabase, withoutPassword } from "./database.ts";
import { BackupError } from "./errors.ts";
import { installHint, parseVersion, requireAtLeast, toolPath, toolVersion, type PgClient, type PgVersion } from "./pg-tools.ts";
import { runTool } from "./process.ts";
import { maskUrl, redactor, urlPassword } from "./redact.ts";

/** Where a dump is and how to read it. */
export interface DumpOptions {
  file: string;
  client: PgClient;
  /** Deadline of each pg_restore run. */
  timeoutMs: number;
}

/** What `db:restore` needs; built by main.ts. */
export interface RestoreOptions extends DumpOptions {
  /** The database to restore into (created when missing). */
  targetUrl: string;
  /** Replace a target that already has tables: drop and recreate the database. */
  force: boolean;
}

/** What a restore did. */
export interface RestoreResult {
  database: string;
  /** The target, password masked. */
  target: string;
  created: boolean;
  /** The target had tables and was dropped and recreated (--force). */
  replaced: boolean;
  tables: number;
  dumpedBy: PgVersion | null;
}

/** What `pg_restore --list` says about a dump. */
export interface DumpListing {
  /** The table of contents as pg_restore prints it. */
  text: string;
  /** The version of the pg_dump that wrote it, from its header. */
  dumpedBy: PgVersion | null;
}

/** Databases a restore never writes over. */
const PROTECTED = new Set(["template0", "template1"]);

/** The dump's table of contents (`pg_restore --list`); checks first that this pg_restore can read it. */
export async function listDump(opts: DumpOptions): Promise<DumpListing> {
  const info = await stat(opts.file).catch(() => null);
  if (info === null || !info.isFile()) throw new BackupError("not_found", `No dump file at ${opts.file}; pass --file with a file written by npm run db:backup.`);
  const pgRestore = await toolVersion(opts.client, "pg_restore", null);
  const { stdout } = await runTool(toolPath(opts.client, "pg_restore"), ["--list", opts.file], {
    what: "pg_restore --list",
    env: opts.client.env,
    timeoutMs: opts.timeoutMs,
    redact: (text) => text,
    missingHint: installHint(null),
  }).catch((err: unknown) => {
    // An archive from a newer pg_dump fails here with "unsupported version (1.16) in file header".
    if (err instanceof BackupError && /unsupported version/.test(err.message)) {
      throw new BackupError("tool_too_old", `${err.message}\npg_restore ${pgRestore.text} is older than the pg_dump that wrote ${opts.file}. ${installHint(null)}`);
    }
    if (err instanceof BackupError && /valid archive/.test(err.message)) {
      throw new BackupError("tool_failed", `${err.message}\n${opts.file} is not a pg_dump custom-format archive; restore a switchyard-*.dump written by npm run db:backup (a plain SQL dump goes through psql -f instead).`);
    }
    throw err;
  });
  const header = /Dumped by pg_dump version: (\S+)/.exec(stdout);
  const dumpedBy = header?.[1] === undefined ? null : parseVersion(header[1]);
  if (dumpedBy !== null) requireAtLeast("pg_restore", pgRestore, dumpedBy, "the pg_dump that wrote this file");
  return { text: stdout, dumpedBy };
}

/**
 * Restores a dump into the target database, creating it when missing. A target with tables is
 * refused unless `force`; with it the dump is restored into a new database beside the target first,
 * and only when that succeeded is the target dropped (its connections closed) and the new one
 * renamed to its name: the target ends up holding exactly what the dump holds (no tables of later
 * migrations left beside it), and a failed restore leaves it as it was. pg_restore runs in one
 * transaction and stops at the first error; ownership and grants are not restored, the objects
 * belong to the user restoring them.
 */
export async function runRestore(opts: RestoreOptions): Promise<RestoreResult> {
  parseDatabaseUrl(opts.targetUrl, "--database-url");
  const target = opts.targetUrl;
  const name = databaseName(target);
  if (PROTECTED.has(name)) throw new BackupError("usage", `Refusing to restore into ${name}; name another database with --database.`);
  const { dumpedBy } = await listDump(opts);

  // A maintenance database on the same server, to create, drop and rename databases from.
  const maintenance = withDatabase(target, name === "postgres" ? "template1" : "postgres");
  const admin = (sql: string) => withClient(maintenance, (c) => c.query(sql));
  const existing = await withClient(target, userTables, true);
  let created = false;
  let replaced = false;
  if (existing === null) {
    await admin(`CREATE DATABASE ${quoteIdent(name)}`);
    created = true;
    await restoreOrDrop(opts, target, admin);
  } else if (existing.length === 0) {
    await restoreInto(opts, target);
  } else if (!opts.force) {
    const sample = existing.slice(0, 3).join(", ") + (existing.length > 3 ? ", …" : "");
    throw new BackupError(
      "target_not_empty",
      `Database "${name}" at ${maskUrl(target)} already has ${existing.length} tables (${sample}); restore will not write over them. ` +
        `Restore into a new database (--database <new name>), or pass --force to replace "${name}" with the dump's contents (its open connections are closed).`,
    );
  } else {
    const staging = stagingName(name);
    await admin(`CREATE DATABASE ${quoteIdent(staging)}`);
    await restoreOrDrop(opts, withDatabase(target, staging), admin);
    await withClient(maintenance, async (c) => {
      const server = await serverVersion(c);
      // WITH (FORCE) (PostgreSQL 13+) closes the gateway's connections instead of failing on them.
      await c.query(`DROP DATABASE ${quoteIdent(name)}${server.major >= 13 ? " WITH (FORCE)" : ""}`);
      await c.query(`ALTER DATABASE ${quoteIdent(staging)} RENAME TO ${quoteIdent(name)}`);
    });
    replaced = true;
  }
  const tables = (await withClient(target, userTables)) ?? [];
  return { database: name, target: maskUrl(target), created, replaced, tables: tables.length, dumpedBy };
}

/** Where a --force restore goes before it replaces the target (at most 63 bytes, Postgres's identifier limit). */
function stagingName(name: string): string {
  const suffix = `_restoring_${Date.now().toString(36)}`;
  let base = name;
  while (Buffer.byteLength(base + suffix) > 63) base = base.slice(0, -1);
  return base + suffix;
}

/** Restores into a database this run created, and drops it again when the restore fails. */
async function restoreOrDrop(opts: DumpOptions, url: string, admin: (sql: string) => Promise<unknown>): Promise<void> {
  try {
    await restoreInto(opts, url);
  } catch (err) {
    await admin(`DROP DATABASE IF EXISTS ${quoteIdent(databaseName(url))}`).catch(() => {});
    throw err;
  }
}

async function restoreInto(opts: DumpOptions, url: string): Promise<void> {
  const password = urlPassword(url);
  await runTool(
    toolPath(opts.client, "pg_restore"),
    ["--no-owner", "--no-acl", "--single-transaction", "--exit-on-error", "--no-password", `--dbname=${withoutPassword(url)}`, opts.file],
    {
      what: "pg_restore",
      env: { ...opts.client.env, ...(password === "" ? {} : { PGPASSWORD: password }), PGCONNECT_TIMEOUT: "10" },
      timeoutMs: opts.timeoutMs,
      redact: redactor([url]),
      missingHint: installHint(null),
    },
  );
}
