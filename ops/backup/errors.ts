/** Why `db:backup` or `db:restore` stopped. */
export type BackupErrorCode =
  /** The command was called wrongly (a missing or invalid flag or setting): exit code 2. */
  | "usage"
  /** pg_dump or pg_restore is not installed (or not where --pg-bin says). */
  | "missing_tool"
  /** The client tools are older than the server or the dump they must read. */
  | "tool_too_old"
  /** pg_dump or pg_restore exited with an error. */
  | "tool_failed"
  /** An external process or query passed its deadline. */
  | "timeout"
  /** The restore target already has tables and --force was not given. */
  | "target_not_empty"
  /** The dump file does not exist or is not a file. */
  | "not_found"
  /** Postgres refused a connection or a query. */
  | "database";

/** The one error type of the backup tool; its message says what to do and never holds a password. */
export class BackupError extends Error {
  override name = "BackupError";
  readonly code: BackupErrorCode;
  constructor(code: BackupErrorCode, message: string) {
    super(message);
    this.code = code;
  }

  /** 2 for a usage mistake, 1 for everything else. */
  get exitCode(): number {
    return this.code === "usage" ? 2 : 1;
  }
}
