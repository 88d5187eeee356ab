import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { Pool, neonConfig } from "@neondatabase/serverless";
import { eq, sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/neon-serverless";
import { pgTable, serial, text } from "drizzle-orm/pg-core";
import pg from "pg";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import ws, { WebSocket } from "ws";
import { configureNeonForLocalPipe, startNeonWsPipe, type NeonWsPipe } from "../../dev/neon-ws-pipe.ts";
import { createDatabase, dropDatabase } from "../../dev/postgres.ts";

const ADMIN_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const dbName = `switchyard_test_pipe_${randomBytes(4).toString("hex")}`;
let dbUrl: string;
let pipe: NeonWsPipe;
let pool: Pool;

beforeAll(async () => {
  dbUrl = await createDatabase(ADMIN_URL, dbName);
});
afterAll(async () => {
  await dropDatabase(ADMIN_URL, dbName);
});
beforeEach(async () => {
  pipe = await startNeonWsPipe();
  configureNeonForLocalPipe(neonConfig, pipe.wsProxy, { webSocketConstructor: ws });
  pool = new Pool({ connectionString: dbUrl });
});
afterEach(async () => {
  await pool.end().catch(() => {}); // some tests end it themselves
  await pipe.close();
  await pipe.close(); // safe twice
});

/** Runs one query on the server directly (not through the pipe), as an operator would. */
async function adminQuery<T extends pg.QueryResultRow>(text: string, params: unknown[] = []): Promise<T[]> {
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  try {
    return (await admin.query<T>(text, params)).rows;
  } finally {
    await admin.end();
  }
}

/** Backends connected to the test database, as the server sees them. */
async function backendCount(): Promise<number> {
  const rows = await adminQuery<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1", [dbName]);
  return rows[0]?.n ?? -1;
}

describe("Neon serverless driver through the local WebSocket pipe", () => {
  it("runs queries with parameters against the real Postgres", async () => {
    expect(pipe.wsProxy).toBe(`127.0.0.1:${pipe.port}/v2`);
    const res = await pool.query<{ sum: number; db: string; echo: string }>(
      "SELECT $1::int + $2::int AS sum, current_database() AS db, $3::text AS echo",
      [40, 2, "ünïcode ✓"],
    );
    expect(res.rows).toEqual([{ sum: 42, db: dbName, echo: "ünïcode ✓" }]);
  });

  it("commits and rolls back transactions on one client", async () => {
    await pool.query("CREATE TABLE ledger (id int PRIMARY KEY, note text NOT NULL)");
    const client = await pool.connect();
    try {
      await client.query("BEGIN");
      await client.query("INSERT INTO ledger VALUES (1, 'kept')");
      await client.query("COMMIT");
      await client.query("BEGIN");
      await client.query("INSERT INTO ledger VALUES (2, 'discarded')");
      await client.query("ROLLBACK");
      await expect(client.query("INSERT INTO ledger VALUES (1, 'duplicate')")).rejects.toThrow(/duplicate key/);
    } finally {
      client.release();
    }
    expect((await pool.query("SELECT id, note FROM ledger ORDER BY id")).rows).toEqual([{ id: 1, note: "kept" }]);
  });

  it("works with drizzle-orm/neon-serverless", async () => {
    const widgets = pgTable("widgets", { id: serial("id").primaryKey(), name: text("name").notNull() });
    const db = drizzle({ client: pool });
    await db.execute(sql`CREATE TABLE widgets (id serial PRIMARY KEY, name text NOT NULL)`);
    const inserted = await db.insert(widgets).values([{ name: "gear" }, { name: "sprocket" }]).returning();
    expect(inserted.map((w) => w.name)).toEqual(["gear", "sprocket"]);
    const found = await db.select().from(widgets).where(eq(widgets.name, "sprocket"));
    expect(found).toEqual([{ id: inserted[1]?.id, name: "sprocket" }]);
  });

  it("refuses an address outside allowedHosts with a clear driver error", async () => {
    const outside = new Pool({ connectionString: "postgres://postgres@example.com:5432/postgres" });
    await expect(outside.query("SELECT 1")).rejects.toThrow("the pipe does not allow address example.com");
    await outside.end().catch(() => {});
  });

  it("closes the WebSocket with 1008 for a bad address or path", async () => {
    for (const path of ["/v1?address=10.0.0.1:5432", "/v2", "/v3?address=127.0.0.1:5432"]) {
      const socket = new WebSocket(`ws://127.0.0.1:${pipe.port}${path}`);
      const [data] = (await once(socket, "message")) as [Buffer];
      expect(data.subarray(0, 1).toString()).toBe("E"); // a Postgres ErrorResponse the driver can report
      const [code] = (await once(socket, "close")) as [number];
      expect(code).toBe(1008);
    }
  });

  it("reports an unreachable upstream as a driver error", async () => {
    const closed = new Pool({ connectionString: "postgres://postgres@127.0.0.1:1/postgres" });
    await expect(closed.query("SELECT 1")).rejects.toThrow(/could not reach 127\.0\.0\.1:1/);
    await closed.end().catch(() => {});
  });

  it("closes the Postgres connection when the driver disconnects, and the other way round", async () => {
    await pool.query("SELECT 1");
    expect(await backendCount()).toBe(1);
    await pool.end();
    await expect.poll(backendCount, { timeout: 3_000 }).toBe(0);

    const client = await (pool = new Pool({ connectionString: dbUrl })).connect();
    const pid = (await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]?.pid;
    // The server's FATAL message comes first, then the closed WebSocket is reported too.
    const errors: unknown[] = [];
    client.on("error", (err) => errors.push(err));
    await adminQuery("SELECT pg_terminate_backend($1)", [pid]);
    await expect.poll(() => errors.length, { timeout: 3_000 }).toBeGreaterThan(0);
    expect(String(errors[0])).toMatch(/terminating connection due to administrator command/);
    client.release(true);
  });

  it("passes 1 MB values through both ways", async () => {
    const big = "x".repeat(1 << 20);
    const res = await pool.query<{ len: number; back: string }>("SELECT length($1::text) AS len, $1::text AS back", [big]);
    expect(res.rows[0]?.len).toBe(1 << 20);
    expect(res.rows[0]?.back === big).toBe(true);
  });
});
