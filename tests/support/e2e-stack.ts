/**
 * The local stack for an end-to-end test file: a fresh database, its own Redis prefix and data
 * folder, the stack started as `npm start` does (gateway on a free port), and one `close()` that
 * stops it and removes all of that.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDatabase, dropDatabase } from "../../dev/postgres.ts";
import { startStack, type Stack, type StackOptions } from "../../dev/stack.ts";
import { deleteRedisPrefix, PG_ADMIN_URL, REDIS_URL, uniqueSuffix } from "./fixtures.ts";

/** A started stack and what was made for it. */
export interface TestStack {
  stack: Stack;
  databaseUrl: string;
  redisPrefix: string;
  dataDir: string;
  close(): Promise<void>;
}

/**
 * Starts the stack for a test file named `name` (used in the database, prefix and folder names). With
 * `embeddedPostgres`, the stack runs the embedded PGlite under its data folder, as `npm start` does by
 * default, instead of a fresh database on the machine's Postgres.
 */
export async function startTestStack(
  name: string,
  opts: Partial<Pick<StackOptions, "simArgs" | "backplaneEnv" | "topology" | "workerVars">> & { embeddedPostgres?: boolean } = {},
): Promise<TestStack> {
  const { embeddedPostgres = false, ...stackOpts } = opts;
  const suffix = uniqueSuffix();
  const dbName = `sy_e2e_${name}_${suffix}`;
  const redisPrefix = `sy:e2e-${name}:${suffix}:`;
  const dataDir = mkdtempSync(join(tmpdir(), `switchyard-e2e-${name}-`));
  const databaseUrl = embeddedPostgres ? undefined : await createDatabase(PG_ADMIN_URL, dbName);
  const cleanup = async () => {
    if (databaseUrl !== undefined) await dropDatabase(PG_ADMIN_URL, dbName);
    await deleteRedisPrefix(redisPrefix);
    rmSync(dataDir, { recursive: true, force: true });
  };
  let stack: Stack;
  try {
    stack = await startStack({ dataDir, databaseUrl, redisUrl: REDIS_URL, redisPrefix, host: "127.0.0.1", gatewayPort: 0, simArgs: [], echo: false, ...stackOpts });
  } catch (err) {
    await cleanup();
    throw err;
  }
  return {
    stack,
    databaseUrl: stack.databaseUrl,
    redisPrefix,
    dataDir,
    close: async () => {
      await stack.close();
      await cleanup();
    },
  };
}
