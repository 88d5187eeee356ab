import pg from "pg";
import { BackupError } from "./errors.ts";
import { maskUrl, redactor } from "./redact.ts";
import type { PgVersion } from "./pg-tools.ts";

/** Deadlines of the tool's own connections and queries. */
const CONNECT_TIMEOUT_MS = 10_000;
const QUERY_TIMEOUT_MS = 60_000;

/** Postgres's "database does not exist" (SQLSTATE 3D000). */
const INVALID_CATALOG_NAME = "3D000";

/** Checks that `url` is a postgres:// connection URL (a usage error otherwise). */
export function parseDatabaseUrl(url: string, flag: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new BackupError("usage", `${flag} is not a URL; expected postgres://user:password@host:5432/database.`);
  }
  if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
    throw new BackupError("usage", `${flag} must be a postgres:// or postgresql:// URL, not ${parsed.protocol}//…`);
  }
  return parsed;
}

/** The database a URL names (libpq's default when the path is empty: the user's name). */
export function databaseName(url: string): string {
  const parsed = new URL(url);
  const path = decodeURIComponent(parsed.pathname.replace(/^\//, ""));
  return path !== "" ? path : decodeURIComponent(parsed.username) || "postgres";
}

/** The same server and credentials, another database. */
export function withDatabase(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(name)}`;
  return parsed.toString();
}

/** The URL without its password, for a child process's command line (the password goes in PGPASSWORD). */
export function withoutPassword(url: string): string {
  const parsed = new URL(url);
  parsed.password = "";
  parsed.searchParams.delete("password");
  return parsed.toString();
}

/** Database names cannot be bound as parameters, so they are quoted as identifiers. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * Runs `work` on one connection to `url`. Connection failures become a BackupError naming the masked
 * URL; "database does not exist" is returned as `null` when `missingOk`.
 */
export async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>, missingOk = false): Promise<T | null> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, query_timeout: QUERY_TIMEOUT_MS });
  // An error after connect (the server went away) must not crash the process; the pending query rejects.
  client.on("error", () => {});
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => {});
    if (missingOk && sqlState(err) === INVALID_CATALOG_NAME) return null;
    throw new BackupError("database", `Cannot connect to ${maskUrl(url)}: ${describe(err, url)}. Check the URL, that the server is up and that this machine may connect to it.`);
  }
  try {
    return await work(client);
  } catch (err) {
    if (err instanceof BackupError) throw err;
    throw new BackupError("database", `A query on ${maskUrl(url)} failed: ${describe(err, url)}.`);
  } finally {
    await client.end().catch(() => {});
  }
}

/** The server's version (`server_version_num`: 150020 is 15.20). */
export async function serverVersion(client: pg.Client): Promise<PgVersion> {
  const { rows } = await client.query<{ num: string }>("SELECT current_setting('server_version_num') AS num");
  const num = Number(rows[0]?.num);
  const major = Math.floor(num / 10_000);
  return { text: major >= 10 ? `${major}.${num % 10_000}` : String(num), major };
}

/** Every table outside the system schemas, as schema.table, sorted. */
export async function userTables(client: pg.Client): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS name
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
      ORDER BY 1`,
  );
  return rows.map((r) => r.name);
}

function sqlState(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && "code" in err && typeof err.code === "string" ? err.code : undefined;
}

function describe(err: unknown, url: string): string {
  const message = err instanceof Error ? err.message : String(err);
  // Driver messages do not carry the password today; scrub anyway in case one ever echoes it.
  return redactor([url])(message);
}
