/**
 * `npm run db:backup` and `npm run db:restore`: pg_dump backups of the gateway's Postgres with a
 * retention, and restores into a named database (docs/backups.md). This is the only file of the
 * tool that reads process.env and argv.
 */
import { isAbsolute, resolve } from "node:path";
import { parseArgs } from "node:util";
import { runBackup } from "./backup.ts";
import { withDatabase } from "./database.ts";
import { BackupError } from "./errors.ts";
import { formatBackup, formatRestore } from "./format.ts";
import { redactor } from "./redact.ts";
import { listDump, runRestore } from "./restore.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const DEFAULT_RETENTION_DAYS = 30;
const DEFAULT_TIMEOUT_MINUTES = 60;

const HELP = `Usage:
  npm run db:backup  -- [--database-url URL] [--dir DIR] [--retention-days N]
  npm run db:restore -- --file DUMP (--database-url URL | --database NAME) [--force]
  npm run db:restore -- --file DUMP --list

backup    pg_dump (custom format) of the database to DIR/switchyard-<UTC time>.dump (mode 0600),
          then deletes this tool's dumps in DIR older than N days (0 keeps all).
restore   pg_restore of DUMP into the database named by --database-url, or by --database on the
          server of --database-url / DATABASE_URL; created when missing. A database that has tables
          is refused unless --force, which replaces it with the dump's contents.
--list    Shows the dump's table of contents.

  --database-url URL     backup: the database to dump (default DATABASE_URL); restore: the target
  --dir DIR              default BACKUP_DIR, else .data/backups
  --retention-days N     default BACKUP_RETENTION_DAYS, else ${DEFAULT_RETENTION_DAYS}
  --pg-bin DIR           folder of pg_dump and pg_restore (default: found on PATH)
  --timeout-minutes N    deadline of pg_dump and pg_restore (default ${DEFAULT_TIMEOUT_MINUTES})

See docs/backups.md.`;

const env = process.env;
// npm run changes into the package folder; relative paths mean what they meant where the user typed them.
const cwd = env.INIT_CWD ?? process.cwd();
let redact = (text: string) => text;

try {
  const { values, positionals } = parseArgs({
    args: process.argv.slice(2),
    allowPositionals: true,
    strict: true,
    options: {
      "database-url": { type: "string" },
      database: { type: "string" },
      dir: { type: "string" },
      "retention-days": { type: "string" },
      file: { type: "string" },
      force: { type: "boolean" },
      list: { type: "boolean" },
      "pg-bin": { type: "string" },
      "timeout-minutes": { type: "string" },
      help: { type: "boolean" },
    },
  });
  const command = positionals[0];
  if (values.help === true) {
    console.log(HELP);
    process.exit(0);
  }
  if (positionals.length !== 1 || (command !== "backup" && command !== "restore")) throw new BackupError("usage", `Expected one command, backup or restore.\n\n${HELP}`);

  const client = { binDir: values["pg-bin"] === undefined ? undefined : resolve(cwd, values["pg-bin"]), env };
  const timeoutMs = positiveInt(values["timeout-minutes"] ?? String(DEFAULT_TIMEOUT_MINUTES), "--timeout-minutes", 1) * 60_000;
  const databaseUrl = nonEmpty(values["database-url"]) ?? nonEmpty(env.DATABASE_URL);
  redact = redactor(databaseUrl === undefined ? [] : [databaseUrl]);

  if (command === "backup") {
    if (databaseUrl === undefined) {
      throw new BackupError("usage", "Set DATABASE_URL (or pass --database-url) to the Postgres database to back up, e.g. DATABASE_URL=postgres://user:password@host:5432/switchyard npm run db:backup");
    }
    const dirSetting = nonEmpty(values.dir) ?? nonEmpty(env.BACKUP_DIR);
    const result = await runBackup({
      databaseUrl,
      dir: dirSetting === undefined ? resolve(ROOT, ".data", "backups") : resolve(cwd, dirSetting),
      retentionDays: positiveInt(values["retention-days"] ?? nonEmpty(env.BACKUP_RETENTION_DAYS) ?? String(DEFAULT_RETENTION_DAYS), "--retention-days (BACKUP_RETENTION_DAYS)", 0),
      client,
      timeoutMs,
      warn: (line) => console.error(redact(line)),
    });
    console.log(formatBackup(result));
  } else {
    const file = nonEmpty(values.file);
    if (file === undefined) throw new BackupError("usage", "Pass --file with the dump to restore (a switchyard-*.dump written by npm run db:backup).");
    const dumpOptions = { file: isAbsolute(file) ? file : resolve(cwd, file), client, timeoutMs };
    if (values.list === true) {
      console.log((await listDump(dumpOptions)).text.trimEnd());
    } else {
      const name = nonEmpty(values.database);
      if (name === undefined && nonEmpty(values["database-url"]) === undefined) {
        throw new BackupError("usage", "Name the database to restore into: --database-url postgres://…/<name>, or --database <name> on the server of DATABASE_URL. Restore never picks a target on its own.");
      }
      if (databaseUrl === undefined) throw new BackupError("usage", "--database needs the server: pass --database-url or set DATABASE_URL.");
      const targetUrl = name === undefined ? databaseUrl : withDatabase(databaseUrl, name);
      console.log(formatRestore(await runRestore({ ...dumpOptions, targetUrl, force: values.force === true })));
    }
  }
} catch (err) {
  if (err instanceof BackupError) {
    console.error(redact(err.message));
    process.exitCode = err.exitCode;
  } else if (err instanceof TypeError && "code" in err && typeof err.code === "string" && err.code.startsWith("ERR_PARSE_ARGS")) {
    console.error(`${err.message}\n\n${HELP}`);
    process.exitCode = 2;
  } else {
    console.error(redact(err instanceof Error ? (err.stack ?? err.message) : String(err)));
    process.exitCode = 1;
  }
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === "" ? undefined : value;
}

function positiveInt(value: string, what: string, min: number): number {
  if (!/^\d+$/.test(value.trim()) || Number(value) < min) throw new BackupError("usage", `${what} must be a whole number of at least ${min}, not ${JSON.stringify(value)}.`);
  return Number(value);
}
