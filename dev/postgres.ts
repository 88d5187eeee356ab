import { mkdir } from "node:fs/promises";
import { PGlite } from "@electric-sql/pglite";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";
import pg from "pg";
import { startPostgresGate, type PostgresGate } from "./postgres-gate.ts";

export interface LocalPostgres {
  readonly url: string;
  readonly embedded: boolean;
  /**
   * Client connections open now: sessions through the embedded server's gate (open and waiting), or
   * for DATABASE_URL the server's backends on this database (pg_stat_activity), this probe excluded.
   */
  connections(): Promise<number>;
  close(): Promise<void>;
}

/** Sessions the embedded PGlite serves at once; more wait in the gate's queue (see postgres-gate.ts). */
const EMBEDDED_MAX_ACTIVE = 16;
const EMBEDDED_MAX_QUEUED = 1000;
const EMBEDDED_QUEUE_TIMEOUT_MS = 30_000;

/** DATABASE_URL if given; otherwise an embedded PGlite persisted under dataDir, served over the Postgres wire protocol (pglite-socket) on host:port (port 0 = free port). */
export async function startPostgres(opts: { databaseUrl?: string; dataDir: string; host?: string; port?: number }): Promise<LocalPostgres> {
  if (opts.databaseUrl !== undefined && opts.databaseUrl !== "") {
    const url = opts.databaseUrl;
    return { url, embedded: false, connections: () => backendCount(url), close: async () => {} };
  }
  await mkdir(opts.dataDir, { recursive: true });
  const db = await PGlite.create(opts.dataDir);
  const host = opts.host ?? "127.0.0.1";
  // pglite-socket allows one connection by default; a pg or Neon Pool opens several. PGlite is still one
  // session: queries queue, and while one connection is inside a transaction the others wait for it.
  // Through the Neon driver, pipelineConnect must be false: its early password message hangs PGlite
  // (and the event loop of this process), where a real Postgres answers with an error.
  // Clients reach it through the gate (postgres-gate.ts), which ends sessions on Terminate and queues
  // bursts; pglite-socket itself listens on a loopback port of its own, above the gate's limit.
  const server = new PGLiteSocketServer({ db, host, port: 0, maxConnections: EMBEDDED_MAX_ACTIVE * 2 });
  let gate: PostgresGate;
  try {
    await server.start();
    // getServerConn() reports "host:port" with the real port after start().
    const address = server.getServerConn();
    const upstreamPort = Number(address.slice(address.lastIndexOf(":") + 1));
    gate = await startPostgresGate({
      host,
      port: opts.port ?? 0,
      upstreamHost: host,
      upstreamPort,
      maxActive: EMBEDDED_MAX_ACTIVE,
      maxQueued: EMBEDDED_MAX_QUEUED,
      queueTimeoutMs: EMBEDDED_QUEUE_TIMEOUT_MS,
    });
  } catch (err) {
    await server.stop();
    await db.close();
    throw err;
  }
  let closing: Promise<void> | undefined;
  return {
    url: `postgres://postgres@${host.includes(":") ? `[${host}]` : host}:${gate.port}/postgres`,
    embedded: true,
    connections: () => {
      const { active, queued } = gate.stats();
      return Promise.resolve(active + queued);
    },
    close: () => {
      closing ??= (async () => {
        await gate.close();
        await server.stop();
        await db.close();
      })();
      return closing;
    },
  };
}

/** Creates a fresh database (drops it first if it exists) on the server of adminUrl and returns its URL; for tests. */
export async function createDatabase(adminUrl: string, name: string): Promise<string> {
  await withAdmin(adminUrl, async (client) => {
    await client.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
    await client.query(`CREATE DATABASE ${quoteIdent(name)}`);
  });
  const url = new URL(adminUrl);
  url.pathname = `/${encodeURIComponent(name)}`;
  // Embedded PGlite accepts CREATE DATABASE but serves its one database under any name, which would
  // silently share tables between tests.
  let connectedTo = "";
  await withAdmin(url.toString(), async (client) => {
    connectedTo = String((await client.query<{ db: string }>("SELECT current_database() AS db")).rows[0]?.db);
  });
  if (connectedTo !== name) {
    await dropDatabase(adminUrl, name);
    throw new Error(`the server at ${new URL(adminUrl).host} ignores the database name (embedded PGlite?); per-test databases need a real Postgres`);
  }
  return url.toString();
}

/** Drops the database (and any connections still open to it) if it exists. */
export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  await withAdmin(adminUrl, async (client) => {
    await client.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
  });
}

/** Backends connected to the database of `url`, other than the one asking. */
async function backendCount(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
    return rows[0]?.n ?? 0;
  } finally {
    await client.end();
  }
}

async function withAdmin(adminUrl: string, work: (client: pg.Client) => Promise<void>): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await work(client);
  } finally {
    await client.end();
  }
}

// Database names cannot be bound as parameters, so they are quoted as identifiers.
function quoteIdent(name: string): string {
  if (name === "" || name.includes("\0")) throw new Error(`invalid database name ${JSON.stringify(name)}`);
  return `"${name.replaceAll('"', '""')}"`;
}
