import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Pool, neonConfig } from "@neondatabase/serverless";
import { sql } from "drizzle-orm";
import pg from "pg";
import { afterEach, describe, expect, it } from "vitest";
import ws from "ws";
import { configureNeonForLocalPipe, startNeonWsPipe } from "../../dev/neon-ws-pipe.ts";
import { createDatabase, dropDatabase, startPostgres, type LocalPostgres } from "../../dev/postgres.ts";
import { startPostgresGate } from "../../dev/postgres-gate.ts";
import { withDb } from "../../worker/src/platform/db.ts";

const ADMIN_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "switchyard-pglite-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function started(opts: Parameters<typeof startPostgres>[0]): Promise<LocalPostgres> {
  const db = await startPostgres(opts);
  cleanups.push(() => db.close());
  return db;
}

async function query<T extends pg.QueryResultRow>(url: string, text: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(text, params)).rows;
  } finally {
    await client.end();
  }
}

describe("startPostgres", () => {
  it("passes DATABASE_URL through without starting anything", async () => {
    const db = await started({ databaseUrl: ADMIN_URL, dataDir: "/nonexistent/never-created" });
    expect(db).toMatchObject({ url: ADMIN_URL, embedded: false });
    expect(await query<{ one: number }>(db.url, "SELECT 1 AS one")).toEqual([{ one: 1 }]);
  });

  it("serves an embedded PGlite to pg and keeps its data across a restart", async () => {
    const dataDir = await tempDir();
    const first = await startPostgres({ dataDir, port: 0 });
    try {
      expect(first.embedded).toBe(true);
      expect(first.url).toMatch(/^postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres$/);
      await query(first.url, "CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL)");
      await query(first.url, "INSERT INTO notes VALUES ($1, $2)", [1, "survives restarts"]);
    } finally {
      await first.close();
      await first.close(); // safe twice
    }
    const second = await started({ dataDir });
    expect(await query(second.url, "SELECT id, body FROM notes")).toEqual([{ id: 1, body: "survives restarts" }]);
  });

  it("lets the Neon driver reach the embedded PGlite through the WebSocket pipe", async () => {
    const db = await started({ dataDir: await tempDir() });
    const pipe = await startNeonWsPipe();
    cleanups.push(() => pipe.close());
    configureNeonForLocalPipe(neonConfig, pipe.wsProxy, { webSocketConstructor: ws });
    const pool = new Pool({ connectionString: db.url, max: 3 });
    cleanups.push(() => pool.end());
    const rows = await Promise.all([1, 2, 3, 4].map(async (n) => (await pool.query<{ n: number }>("SELECT $1::int * 2 AS n", [n])).rows[0]?.n));
    expect(rows).toEqual([2, 4, 6, 8]);
    const client = await pool.connect();
    try {
      await client.query("BEGIN");
      await client.query("CREATE TABLE t (x int)");
      await client.query("INSERT INTO t VALUES (7)");
      await client.query("COMMIT");
    } finally {
      client.release();
    }
    expect((await pool.query("SELECT x FROM t")).rows).toEqual([{ x: 7 }]);
  });
});

describe("embedded Postgres under the worker's connection pattern", () => {
  it("leaves no connection open after 30 withDb calls through the pipe (each Pool ended, as the worker does)", async () => {
    const db = await started({ dataDir: await tempDir() });
    const pipe = await startNeonWsPipe();
    cleanups.push(() => pipe.close());
    for (let i = 0; i < 30; i++) {
      const rows = await withDb(db.url, pipe.wsProxy, (d) => d.execute<{ n: number }>(sql`SELECT ${i}::int AS n`));
      expect(rows.rows).toEqual([{ n: i }]);
    }
    expect(pipe.connections()).toBe(30);
    // The Neon driver never closes its WebSocket on end(); the server must end the session on Terminate.
    await expect.poll(() => pipe.open(), { timeout: 3_000 }).toBe(0);
    await expect.poll(() => db.connections(), { timeout: 3_000 }).toBe(0);
  });

  it("answers every one of a burst of 100 concurrent withDb calls and stays usable", async () => {
    const db = await started({ dataDir: await tempDir() });
    const pipe = await startNeonWsPipe();
    cleanups.push(() => pipe.close());
    const burst = await Promise.allSettled(
      Array.from({ length: 100 }, (_, i) => withDb(db.url, pipe.wsProxy, (d) => d.execute<{ n: number }>(sql`SELECT ${i}::int AS n`))),
    );
    const failed = burst.filter((r) => r.status === "rejected").map((r) => String(r.reason));
    expect(failed).toEqual([]);
    expect(burst.map((r) => (r.status === "fulfilled" ? r.value.rows[0]?.n : null))).toEqual(Array.from({ length: 100 }, (_, i) => i));
    await expect.poll(() => db.connections(), { timeout: 5_000 }).toBe(0);
    expect((await withDb(db.url, pipe.wsProxy, (d) => d.execute<{ ok: number }>(sql`SELECT 1 AS ok`))).rows).toEqual([{ ok: 1 }]);
  });

  it("queues sessions past its limit and refuses with too_many_connections past the queue bound", async () => {
    const upstream = await started({ dataDir: await tempDir() });
    const gate = await startPostgresGate({
      host: "127.0.0.1",
      port: 0,
      upstreamHost: "127.0.0.1",
      upstreamPort: Number(new URL(upstream.url).port),
      maxActive: 1,
      maxQueued: 1,
      queueTimeoutMs: 5_000,
    });
    cleanups.push(() => gate.close());
    const url = `postgres://postgres@127.0.0.1:${gate.port}/postgres`;
    const holder = new pg.Client({ connectionString: url });
    await holder.connect();
    const waiter = query<{ n: number }>(url, "SELECT 2 AS n");
    await expect.poll(() => gate.stats()).toEqual({ active: 1, queued: 1 });
    await expect(query(url, "SELECT 3")).rejects.toThrow(/too many connections to the embedded Postgres \(1 open, 1 waiting\)/);
    await holder.end();
    expect(await waiter).toEqual([{ n: 2 }]);
    await expect.poll(() => gate.stats()).toEqual({ active: 0, queued: 0 });
  });
});

describe("createDatabase and dropDatabase", () => {
  it("creates a fresh database, recreates it empty, and drops it", async () => {
    const name = `switchyard_test_db_${randomBytes(4).toString("hex")}`;
    cleanups.push(() => dropDatabase(ADMIN_URL, name));
    const url = await createDatabase(ADMIN_URL, name);
    expect(new URL(url).pathname).toBe(`/${name}`);
    expect(await query(url, "SELECT current_database() AS db")).toEqual([{ db: name }]);
    await query(url, "CREATE TABLE leftover (x int)");

    // An open connection must not stop the re-create (DROP … WITH (FORCE)).
    const lingering = new pg.Client({ connectionString: url });
    lingering.on("error", () => {}); // the forced drop terminates it
    await lingering.connect();
    await createDatabase(ADMIN_URL, name);
    expect(await query(url, "SELECT to_regclass('leftover') AS t")).toEqual([{ t: null }]);
    await lingering.end().catch(() => {});

    await dropDatabase(ADMIN_URL, name);
    expect(await query(ADMIN_URL, "SELECT datname FROM pg_database WHERE datname = $1", [name])).toEqual([]);
    await dropDatabase(ADMIN_URL, name); // dropping a missing database is fine
  });

  it("refuses to fake a per-test database on embedded PGlite, which serves one database under any name", async () => {
    const db = await started({ dataDir: await tempDir() });
    await expect(createDatabase(db.url, "isolated")).rejects.toThrow(/ignores the database name/);
  });
});
