import { drizzle, type NodePgDatabase } from "drizzle-orm/node-postgres";
import { migrate } from "drizzle-orm/node-postgres/migrator";
import { fileURLToPath } from "node:url";
import pg from "pg";
import * as schema from "../schema/tables/index.ts";

/** The committed migrations folder. */
export const MIGRATIONS_FOLDER = fileURLToPath(new URL("../schema/migrations", import.meta.url));

/** A node-postgres drizzle handle for the admin tools, the local stack and tests. */
export interface NodeDb {
  db: NodePgDatabase<typeof schema>;
  close(): Promise<void>;
}

/** Opens a small pool to `url`. */
export function openDb(url: string): NodeDb {
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  pool.on("error", () => {});
  let closing: Promise<void> | null = null;
  return {
    db: drizzle({ client: pool, schema }),
    close: () => (closing ??= pool.end()),
  };
}

/** Applies the committed migrations (idempotent). */
export async function migrateDb(url: string): Promise<void> {
  const handle = openDb(url);
  try {
    await migrate(handle.db, { migrationsFolder: MIGRATIONS_FOLDER });
  } finally {
    await handle.close();
  }
}
