import { Pool, neonConfig } from "@neondatabase/serverless";
import { drizzle, type NeonDatabase } from "drizzle-orm/neon-serverless";
import * as schema from "../../../schema/tables/index.ts";

/** The drizzle database type used by the worker. */
export type Db = NeonDatabase<typeof schema>;

let configuredProxy: string | null | undefined;

/**
 * Points the Neon driver at a local WebSocket-to-TCP pipe (dev/neon-ws-pipe.ts) when NEON_WS_PROXY
 * is set; in production it stays on Neon's defaults. pipelineConnect must be off because local
 * Postgres uses trust or SCRAM auth, not the cleartext password the pipelining assumes.
 */
function configureNeon(wsProxy: string | null): void {
  if (configuredProxy === wsProxy) return;
  configuredProxy = wsProxy;
  if (wsProxy === null) return;
  neonConfig.wsProxy = (host, port) => `${wsProxy}?address=${host}:${port}`;
  neonConfig.useSecureWebSocket = false;
  neonConfig.pipelineConnect = false;
  neonConfig.pipelineTLS = false;
}

/**
 * Runs `fn` with a database connection made for this request and closed afterwards. Workers cannot
 * keep WebSockets across requests, so a Pool lives exactly as long as one unit of work.
 */
export async function withDb<T>(databaseUrl: string, wsProxy: string | null, fn: (db: Db) => Promise<T>): Promise<T> {
  configureNeon(wsProxy);
  const pool = new Pool({ connectionString: databaseUrl, max: 1 });
  // An idle client error (socket closed by the server) must not become an uncaught exception.
  pool.on("error", () => {});
  try {
    return await fn(drizzle({ client: pool, schema }));
  } finally {
    await pool.end();
  }
}

/**
 * True when Postgres refused the data itself: SQLSTATE class 22 (data exception: a bad number, date
 * or string) or 23 (integrity constraint violation). Retrying such a write can never succeed, unlike
 * a lost connection or a timeout. Looks through drizzle's wrapping (`cause`).
 */
export function isDataError(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && typeof e === "object" && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && /^2[23][0-9A-Z]{3}$/.test(code)) return true;
  }
  return false;
}
