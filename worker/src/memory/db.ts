/**
 * Postgres for the memory routes. They are not inference requests, so they query Postgres directly
 * (with the database deadline, DB_TIMEOUT_MS); when Postgres cannot be reached the caller gets a 503
 * `dependency_unavailable` with Retry-After, never a 500. A failure Postgres itself reports about the
 * query (a bad value, a bug) is not an outage and is left to the error handler.
 */
import { ApiError } from "../errors.ts";
import type { Db } from "../platform/db.ts";
import { DbTimeoutError, type Deps } from "../platform/deps.ts";

// SQLSTATE classes of an unreachable or overloaded server: connection exception, insufficient
// resources, operator intervention (shutdown), system error.
const OUTAGE_CLASSES = new Set(["08", "53", "57", "58"]);

function sqlState(err: unknown): string | null {
  for (let e: unknown = err, depth = 0; e && typeof e === "object" && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return null;
}

// The innermost cause's message: drizzle's own wraps it in the whole query text and its parameters.
function rootMessage(err: unknown): string {
  let e = err;
  for (let depth = 0; e instanceof Error && e.cause !== undefined && depth < 4; depth++) e = e.cause;
  // The Neon driver rejects with a WebSocket ErrorEvent when it cannot connect: not an Error, but with a message.
  const message = e && typeof e === "object" ? (e as { message?: unknown }).message : undefined;
  return typeof message === "string" && message !== "" ? message : String(e);
}

/** True when `err` says Postgres could not be reached or did not answer in time (not that it refused the query). */
export function isDbOutage(err: unknown): boolean {
  if (err instanceof ApiError) return false;
  if (err instanceof DbTimeoutError) return true;
  const state = sqlState(err);
  // No SQLSTATE: the driver never got an answer (socket, WebSocket or DNS failure).
  return state === null || OUTAGE_CLASSES.has(state.slice(0, 2));
}

/** Runs `fn` on a database connection; an outage becomes 503 `dependency_unavailable`. */
export async function memoryDb<T>(deps: Deps, fn: (db: Db) => Promise<T>): Promise<T> {
  try {
    return await deps.db(fn);
  } catch (err) {
    if (!isDbOutage(err)) throw err;
    deps.log("memory_db_unavailable", { error: rootMessage(err) });
    throw new ApiError("dependency_unavailable", "Memory trails are kept in Postgres, which cannot be reached right now. Retry in a few seconds.", {
      headers: { "retry-after": "5" },
    });
  }
}
