import { execFile } from "node:child_process";
import { chmod, mkdtemp, readdir, rm, stat, utimes, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { migrateDb, openDb } from "../../dev/db.ts";
import { createDatabase, dropDatabase } from "../../dev/postgres.ts";
import {
  budgets,
  conversations,
  creditGrants,
  healthChecks,
  limitOverrides,
  memoryBreadcrumbs,
  memoryTrails,
  nodeTokenCounters,
  reconciliations,
  spotEvents,
  usageHourly,
  usageRecords,
} from "../../schema/tables/index.ts";
import { BackupError } from "../../ops/backup/errors.ts";
import { runTool } from "../../ops/backup/process.ts";
import { PG_ADMIN_URL, seedTestTenants, uniqueSuffix } from "../support/fixtures.ts";

// `npm run db:backup` / `db:restore` (ops/backup) as a user runs them: child processes against the
// machine's Postgres and its pg_dump / pg_restore, on scratch databases dropped afterwards.

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const MAIN = join(ROOT, "ops", "backup", "main.ts");
const DAY_MS = 86_400_000;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Settings the machine may have that would change what the CLI does. */
const CLEAN_ENV = Object.fromEntries(Object.entries(process.env).filter(([k]) => !["DATABASE_URL", "BACKUP_DIR", "BACKUP_RETENTION_DAYS", "INIT_CWD"].includes(k)));

/** `node ops/backup/main.ts <args>` (what the npm scripts run), with only `env` on top of a clean environment. */
function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return run(process.execPath, [MAIN, ...args], env);
}

function run(file: string, args: string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd: ROOT, env: { ...CLEAN_ENV, ...env }, timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === "number" ? err.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Major version of the machine's pg_dump, or null when there is none. */
function pgDumpMajor(): Promise<number | null> {
  return new Promise((resolve) => {
    execFile("pg_dump", ["--version"], { timeout: 15_000 }, (err, stdout) => {
      const match = /\)\s*(\d+)/.exec(stdout);
      resolve(err === null && match?.[1] !== undefined ? Number(match[1]) : null);
    });
  });
}

async function serverMajor(): Promise<number> {
  const client = new pg.Client({ connectionString: PG_ADMIN_URL });
  await client.connect();
  try {
    const { rows } = await client.query<{ num: string }>("SELECT current_setting('server_version_num') AS num");
    return Math.floor(Number(rows[0]?.num) / 10_000);
  } finally {
    await client.end();
  }
}

const SERVER_MAJOR = await serverMajor();
const CLIENT_MAJOR = await pgDumpMajor();
const CLIENT_USABLE = CLIENT_MAJOR !== null && CLIENT_MAJOR >= SERVER_MAJOR;
if (!CLIENT_USABLE) {
  console.warn(
    `backup.test.ts: skipping the round trips: pg_dump ${CLIENT_MAJOR === null ? "is not installed" : `${CLIENT_MAJOR} is older than the server (${SERVER_MAJOR})`}; ` +
      `install postgresql-client-${SERVER_MAJOR} (apt-get install postgresql-client-${SERVER_MAJOR}).`,
  );
}

/** Row count and checksum of every table outside the system schemas, by schema.table. */
async function tableSums(url: string): Promise<Map<string, { rows: number; md5: string }>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows: tables } = await client.query<{ name: string }>(
      `SELECT format('%I.%I', n.nspname, c.relname) AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' ORDER BY 1`,
    );
    const sums = new Map<string, { rows: number; md5: string }>();
    for (const { name } of tables) {
      const { rows } = await client.query<{ n: string; md5: string | null }>(
        `SELECT count(*) AS n, md5(string_agg(t::text, E'\\n' ORDER BY t::text)) AS md5 FROM ${name} t`,
      );
      sums.set(name, { rows: Number(rows[0]?.n), md5: rows[0]?.md5 ?? "" });
    }
    return sums;
  } finally {
    await client.end();
  }
}

async function sql(url: string, text: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

/** Migrates `url` and fills most tables with rows that exercise types: text with quotes and newlines, JSON, arrays, nulls, bigints, timestamps. */
async function seed(url: string): Promise<void> {
  await migrateDb(url);
  const handle = openDb(url);
  try {
    const { db } = handle;
    const keys = await seedTestTenants(db, [
      { id: "node-a", url: "https://node-a.example:443", models: ["sim-llama-8b", "sim-embed"] },
      { id: "node-b", url: "https://node-b.example:443", models: ["sim-llama-8b"] },
    ]);
    const tenantId = keys.tenantId;
    const base = Date.UTC(2026, 10, 3, 9, 0, 0);
    await db.insert(usageRecords).values(
      Array.from({ length: 120 }, (_, i) => ({
        id: `req_${String(i).padStart(4, "0")}`,
        at: new Date(base + i * 61_003),
        tenantId: i % 5 === 0 ? keys.otherTenantId : tenantId,
        environmentId: "env_x",
        apiKeyId: `key_${i % 7}`,
        endpoint: i % 3 === 0 ? "/v1/embeddings" : "/v1/chat/completions",
        model: i % 3 === 0 ? "sim-embed" : "sim-llama-8b",
        regionId: "local",
        nodeId: i % 2 === 0 ? "node-a" : "node-b",
        status: (["ok", "ok", "ok", "error", "cancelled", "rejected"] as const)[i % 6] ?? "ok",
        httpStatus: i % 6 === 5 ? 429 : 200,
        streamed: i % 2 === 1,
        promptTokens: 10 + i,
        completionTokens: i * 3,
        latencyMs: 100 + i,
        ttftMs: i % 4 === 0 ? null : 20 + i,
        costMicros: 2 ** 40 + i,
        errorCode: i % 6 === 3 ? "upstream_error" : null,
        cacheHit: i % 9 === 0,
      })),
    );
    await db.insert(usageHourly).values(
      Array.from({ length: 24 }, (_, h) => ({ hour: new Date(base + h * 3_600_000), tenantId, environmentId: "env_x", apiKeyId: "key_1", model: "sim-llama-8b", requests: h + 1, promptTokens: 1_000 * h, completionTokens: 2_000 * h, costMicros: 5_000_000_000 + h })),
    );
    await db.insert(budgets).values([
      { id: "bud_1", scope: "tenant", scopeId: tenantId, kind: "tokens", period: "month", amount: 1_000_000 },
      { id: "bud_2", scope: "key", scopeId: "key_1", kind: "spend", period: "day", amount: 9_007_199_254_740 },
    ]);
    await db.insert(limitOverrides).values([
      { scope: "global", scopeId: "global", rpm: 6_000, tpm: null, concurrency: null },
      { scope: "tenant", scopeId: tenantId, rpm: 60, tpm: 100_000, concurrency: 4 },
    ]);
    await db.insert(creditGrants).values({ id: "cr_1", tenantId, kind: "promotion", amountMicros: 25_000_000, remainingMicros: 12_345_678, note: "Launch week — \"thanks\"\nsecond line", expiresAt: null });
    await db.insert(memoryTrails).values([
      { id: "trail_1", tenantId, source: "agent:planner", target: "repo:switchyard", temperature: 91.25, temperatureAt: new Date(base) },
      { id: "trail_2", tenantId, source: "agent:review", target: "", temperature: 12.5, temperatureAt: new Date(base + 1) },
    ]);
    await db.insert(memoryBreadcrumbs).values(
      Array.from({ length: 30 }, (_, i) => ({ id: `crumb_${i}`, trailId: i % 2 === 0 ? "trail_1" : "trail_2", tenantId, content: `note ${i}: ünïcødé, 'quoted', tab\tand emoji 🚂`, at: new Date(base + i * 1_000) })),
    );
    await db.insert(conversations).values(
      Array.from({ length: 12 }, (_, i) => ({
        id: `req_${String(i).padStart(4, "0")}`,
        at: new Date(base + i * 61_003),
        endedAt: new Date(base + i * 61_003 + 1_500),
        tenantId,
        environmentId: "env_x",
        apiKeyId: "key_1",
        mode: i % 2 === 0 ? ("full" as const) : ("metadata" as const),
        endpoint: "/v1/chat/completions",
        model: "sim-llama-8b",
        status: "ok",
        httpStatus: 200,
        streamed: i % 2 === 0,
        requestBody: i % 2 === 0 ? JSON.stringify({ messages: [{ role: "user", content: `Hello ${i}, \\ backslash` }] }) : null,
        responseBody: i % 2 === 0 ? `data: {"n":${i}}\n\ndata: [DONE]` : null,
      })),
    );
    await db.insert(healthChecks).values(
      Array.from({ length: 10 }, (_, i) => ({ id: `hc_${i}`, nodeId: i % 2 === 0 ? "node-a" : "node-b", at: new Date(base + i * 5_000), status: i % 3 === 0 ? "degraded" : "ready", previousStatus: i === 0 ? null : "ready", detail: { inFlight: i, kvCacheUsage: i / 10 } })),
    );
    await db.insert(spotEvents).values({ id: "spot_1", nodeId: "node-b", provider: "aws", action: "terminate", deadline: new Date(base + 120_000), noticedAt: new Date(base), detail: { instanceAction: "terminate" } });
    await db.insert(nodeTokenCounters).values({ nodeId: "node-a", sampledAt: new Date(base), engines: { e0: { promptTokens: 123_456_789, generationTokens: 987_654 } } });
    await db.insert(reconciliations).values({
      id: "rec_1",
      nodeId: "node-a",
      windowStart: new Date(base),
      windowEnd: new Date(base + 3_600_000),
      enginePromptTokens: 1_000,
      engineGenerationTokens: 2_000,
      meteredPromptTokens: 990,
      meteredCompletionTokens: 2_000,
      driftPromptTokens: 10,
      driftGenerationTokens: 0,
      driftRatio: 10 / 3_000,
      alert: false,
    });
  } finally {
    await handle.close();
  }
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe.skipIf(!CLIENT_USABLE)("db:backup and db:restore round trip", () => {
  const suffix = uniqueSuffix();
  const names = { source: `sy_backup_src_${suffix}`, restored: `sy_backup_dst_${suffix}`, fresh: `sy_backup_new_${suffix}` };
  let sourceUrl = "";
  let restoredUrl = "";
  let dir = "";
  let dump = "";
  let sourceSums = new Map<string, { rows: number; md5: string }>();

  beforeAll(async () => {
    sourceUrl = await createDatabase(PG_ADMIN_URL, names.source);
    restoredUrl = await createDatabase(PG_ADMIN_URL, names.restored);
    await dropDatabase(PG_ADMIN_URL, names.fresh);
    await seed(sourceUrl);
    sourceSums = await tableSums(sourceUrl);
    dir = await mkdtemp(join(tmpdir(), "sy-backup-"));
  });
  afterAll(async () => {
    for (const name of Object.values(names)) await dropDatabase(PG_ADMIN_URL, name);
    if (dir !== "") await rm(dir, { recursive: true, force: true });
  });

  it("writes a timestamped custom-format dump of mode 0600 and says where, how big, and that nothing was pruned", async () => {
    const result = await cli(["backup", "--dir", dir], { DATABASE_URL: sourceUrl });
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    const files = (await readdir(dir)).filter((f) => f.endsWith(".dump"));
    expect(files).toHaveLength(1);
    const [name] = files;
    expect(name).toMatch(/^switchyard-\d{8}T\d{6}\.\d{3}Z\.dump$/);
    dump = join(dir, name ?? "");
    const info = await stat(dump);
    expect(info.mode & 0o777).toBe(0o600);
    expect(result.stdout).toContain(`Backup written: ${dump}`);
    expect(result.stdout).toContain(`${info.size} bytes`);
    expect(result.stdout).toContain("Pruned nothing: no backup older than 30 days.");
    // No temp file is left behind.
    expect((await readdir(dir)).filter((f) => f.endsWith(".partial"))).toEqual([]);
  });

  it("lists the dump's contents with --list", async () => {
    const result = await cli(["restore", "--file", dump, "--list"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/Format: CUSTOM/);
    expect(result.stdout).toContain(`dbname: ${names.source}`);
    expect(result.stdout).toMatch(/TABLE DATA public usage_records/);
  });

  it("restores into an empty database with every table's row count and checksum equal to the source's", async () => {
    // The seed fills most tables, so equal checksums mean something.
    const filled = [...sourceSums.values()].filter((s) => s.rows > 0).length;
    expect(filled).toBeGreaterThanOrEqual(18);
    expect(sourceSums.get("public.usage_records")?.rows).toBe(120);

    const result = await cli(["restore", "--file", dump, "--database-url", restoredUrl]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`Restored ${sourceSums.size} tables into "${names.restored}"`);
    expect(result.stdout).toContain("(it was empty)");
    expect(await tableSums(restoredUrl)).toEqual(sourceSums);
  });

  it("creates a missing target database named with --database on the server of DATABASE_URL", async () => {
    const result = await cli(["restore", "--file", dump, "--database", names.fresh], { DATABASE_URL: PG_ADMIN_URL });
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`into "${names.fresh}"`);
    expect(result.stdout).toContain("(created it)");
    const url = new URL(PG_ADMIN_URL);
    url.pathname = `/${names.fresh}`;
    expect(await tableSums(url.toString())).toEqual(sourceSums);
  });

  it("refuses a target that has tables without --force (exit 1, target untouched), and replaces it exactly with --force", async () => {
    await sql(restoredUrl, "DELETE FROM usage_records WHERE id = 'req_0001'; CREATE TABLE public.leftover (id int); INSERT INTO public.leftover VALUES (1)");
    const changed = await tableSums(restoredUrl);

    const refused = await cli(["restore", "--file", dump, "--database-url", restoredUrl]);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe("");
    expect(refused.stderr).toMatch(new RegExp(`Database "${names.restored}" at postgres://.* already has ${sourceSums.size + 1} tables`));
    expect(refused.stderr).toContain("pass --force");
    expect(await tableSums(restoredUrl)).toEqual(changed);

    // An open connection (a gateway still running) does not stop --force.
    const holder = new pg.Client({ connectionString: restoredUrl });
    holder.on("error", () => {});
    await holder.connect();
    try {
      const forced = await cli(["restore", "--file", dump, "--database-url", restoredUrl, "--force"]);
      expect(forced.stderr).toBe("");
      expect(forced.code).toBe(0);
      expect(forced.stdout).toContain("(replaced its previous contents: --force)");
    } finally {
      await holder.end().catch(() => {});
    }
    const after = await tableSums(restoredUrl);
    expect(after.has("public.leftover")).toBe(false);
    expect(after).toEqual(sourceSums);
  });

  it("never prints the password of the connection string", async () => {
    const url = new URL(sourceUrl);
    url.password = "hunter2-s3cret";
    const ok = await cli(["backup", "--dir", dir, "--database-url", url.toString()]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain(`postgres://postgres:***@${url.host}/${names.source}`);
    expect(ok.stdout + ok.stderr).not.toContain("hunter2");

    const down = new URL(url);
    down.port = String(await closedPort());
    const failed = await cli(["backup", "--dir", dir], { DATABASE_URL: down.toString() });
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain(`Cannot connect to postgres://postgres:***@127.0.0.1:${down.port}/`);
    expect(failed.stdout + failed.stderr).not.toContain("hunter2");
  });
});

describe.skipIf(!CLIENT_USABLE)("db:backup retention", () => {
  const name = `sy_backup_ret_${uniqueSuffix()}`;
  let url = "";
  let dir = "";

  beforeAll(async () => {
    url = await createDatabase(PG_ADMIN_URL, name);
    await migrateDb(url);
  });
  afterAll(async () => {
    await dropDatabase(PG_ADMIN_URL, name);
  });
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "sy-backup-ret-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function file(fileName: string, ageDays: number): Promise<void> {
    const path = join(dir, fileName);
    await writeFile(path, "x");
    const at = new Date(Date.now() - ageDays * DAY_MS);
    await utimes(path, at, at);
  }

  it("deletes its own dumps older than the retention and keeps fresh ones and every other file", async () => {
    await file("switchyard-20261001T000000.000Z.dump", 31);
    await file("switchyard-20261120T000000.000Z.dump", 29);
    await file("switchyard-notes.dump", 90);
    await file("notes.txt", 90);
    await file(".switchyard-20261001T000000.000Z.dump.partial", 2);

    const result = await cli(["backup"], { DATABASE_URL: url, BACKUP_DIR: dir });
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("Pruned 2 file(s) past the retention of 30 days");
    expect(result.stdout).toContain("switchyard-20261001T000000.000Z.dump (");
    const left = (await readdir(dir)).sort();
    expect(left).toHaveLength(4);
    expect(left).toEqual(expect.arrayContaining(["notes.txt", "switchyard-20261120T000000.000Z.dump", "switchyard-notes.dump"]));
    expect(left.filter((f) => /^switchyard-\d{8}T\d{6}\.\d{3}Z\.dump$/.test(f))).toHaveLength(2);
  });

  it("takes the retention from --retention-days, then BACKUP_RETENTION_DAYS; 0 keeps everything", async () => {
    await file("switchyard-20261101T000000.000Z.dump", 8);
    const kept = await cli(["backup", "--dir", dir, "--retention-days", "0"], { DATABASE_URL: url, BACKUP_RETENTION_DAYS: "7" });
    expect(kept.code).toBe(0);
    expect(kept.stdout).toContain("Retention off (--retention-days 0): no backup deleted.");
    expect(await readdir(dir)).toContain("switchyard-20261101T000000.000Z.dump");

    const pruned = await cli(["backup", "--dir", dir], { DATABASE_URL: url, BACKUP_RETENTION_DAYS: "7" });
    expect(pruned.code).toBe(0);
    expect(pruned.stdout).toContain("Pruned 1 file(s) past the retention of 7 days");
    expect(await readdir(dir)).not.toContain("switchyard-20261101T000000.000Z.dump");
  });

  it("deletes nothing when the backup fails", async () => {
    await file("switchyard-20261001T000000.000Z.dump", 60);
    const down = new URL(url);
    down.port = String(await closedPort());
    const result = await cli(["backup", "--dir", dir], { DATABASE_URL: down.toString() });
    expect(result.code).toBe(1);
    expect(await readdir(dir)).toEqual(["switchyard-20261001T000000.000Z.dump"]);
  });
});

describe("db:backup and db:restore usage", () => {
  let dir = "";
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "sy-backup-use-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("npm run db:backup without DATABASE_URL says what to set (exit 2)", async () => {
    const result = await run("npm", ["run", "-s", "db:backup"], {});
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("Set DATABASE_URL (or pass --database-url) to the Postgres database to back up");
  });

  it("restore without a target names the flags and never falls back to DATABASE_URL (exit 2)", async () => {
    const result = await cli(["restore", "--file", join(dir, "x.dump")], { DATABASE_URL: PG_ADMIN_URL });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("Name the database to restore into: --database-url");
  });

  it("restore of a file that does not exist says so (exit 1)", async () => {
    const result = await cli(["restore", "--file", join(dir, "missing.dump"), "--database", "sy_unused"], { DATABASE_URL: PG_ADMIN_URL });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`No dump file at ${join(dir, "missing.dump")}`);
  });

  it("says which client package to install when pg_dump is missing", async () => {
    const result = await cli(["backup", "--dir", dir, "--pg-bin", dir], { DATABASE_URL: PG_ADMIN_URL });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`${join(dir, "pg_dump")} was not found.`);
    expect(result.stderr).toContain(`apt-get install postgresql-client-${SERVER_MAJOR}`);
    expect(result.stderr).toContain(`--pg-bin /usr/lib/postgresql/${SERVER_MAJOR}/bin`);
  });

  it("refuses a pg_dump older than the server and says what to install", async () => {
    // A stand-in that only answers --version like an old client (no second PostgreSQL server here).
    const fake = join(dir, "pg_dump");
    await writeFile(fake, "#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n");
    await chmod(fake, 0o755);
    const result = await cli(["backup", "--dir", join(dir, "out"), "--pg-bin", dir], { DATABASE_URL: PG_ADMIN_URL });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`pg_dump 9.6.24 is older than the server (PostgreSQL ${SERVER_MAJOR}.`);
    expect(result.stderr).toContain(`apt-get install postgresql-client-${SERVER_MAJOR}`);
    expect(await readdir(dir)).toEqual(["pg_dump"]);
  });

  it("stops an external process that passes its deadline, and says which flag raises it", async () => {
    const started = Date.now();
    const err = await runTool("sleep", ["30"], { what: "pg_dump", env: CLEAN_ENV, timeoutMs: 300, redact: (t) => t, missingHint: "" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackupError);
    expect(err).toMatchObject({ code: "timeout", message: "pg_dump did not finish within 300 ms and was stopped; raise --timeout-minutes if the database is that large." });
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
