import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { promisify } from "node:util";
import { Redis } from "@upstash/redis";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrateDb, openDb, type NodeDb } from "../../dev/db.ts";
import { createDatabase, dropDatabase } from "../../dev/postgres.ts";
import { startUpstashRestAdapter, type UpstashRestAdapter } from "../../dev/upstash-rest.ts";
import { deriveNodeSecret } from "../../schema/contracts/signing.ts";
import { apiKeys, auditLogs } from "../../schema/tables/index.ts";
import { hashApiKey } from "../../worker/src/auth/keys.ts";
import { keyCacheKey } from "../../worker/src/auth/identity.ts";
import { deleteRedisPrefix, PG_ADMIN_URL, REDIS_URL, uniqueSuffix } from "../support/fixtures.ts";

const run = promisify(execFile);
const suffix = uniqueSuffix();
const dbName = `sy_admin_${suffix}`;
const prefix = `sy:admin:${suffix}:`;
const master = randomBytes(32).toString("hex");
let databaseUrl: string;
let upstash: UpstashRestAdapter;
let redis: Redis;
let db: NodeDb;
const token = randomBytes(16).toString("hex");

async function admin(...args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ["worker/cli/admin.ts", ...args], {
      env: { ...process.env, DATABASE_URL: databaseUrl, UPSTASH_REDIS_REST_URL: upstash.url, UPSTASH_REDIS_REST_TOKEN: token, REDIS_PREFIX: prefix, NODE_SIGNING_SECRET: master },
    });
    return { stdout: stdout.trim(), stderr, code: 0 };
  } catch (err) {
    const e = err as { stdout: string; stderr: string; code: number };
    return { stdout: e.stdout.trim(), stderr: e.stderr, code: e.code };
  }
}

beforeAll(async () => {
  databaseUrl = await createDatabase(PG_ADMIN_URL, dbName);
  await migrateDb(databaseUrl);
  upstash = await startUpstashRestAdapter({ redisUrl: REDIS_URL, token, host: "127.0.0.1" });
  redis = new Redis({ url: upstash.url, token, enableTelemetry: false });
  db = openDb(databaseUrl);
});

afterAll(async () => {
  await db.close();
  await upstash.close();
  await dropDatabase(PG_ADMIN_URL, dbName);
  await deleteRedisPrefix(prefix);
});

describe("admin CLI", () => {
  it("creates a tenant, environment and key, shows the key once and stores only its hash", async () => {
    const tenant = await admin("tenant", "create", "--name", "Acme");
    expect(tenant.stdout).toMatch(/^ten_[0-9a-f]{20}$/);
    const env = await admin("env", "create", "--tenant", tenant.stdout, "--name", "prod");
    expect(env.stdout).toMatch(/^env_/);
    const key = await admin("key", "create", "--tenant", tenant.stdout, "--env", env.stdout, "--name", "ci", "--scopes", "chat");
    expect(key.stdout).toMatch(/^sk-sy-[A-Za-z0-9_-]{43}$/);
    expect(key.stderr).toContain("only time the full key is shown");

    const [row] = await db.db.select().from(apiKeys).where(eq(apiKeys.hash, await hashApiKey(key.stdout)));
    expect(row).toMatchObject({ tenantId: tenant.stdout, scopes: ["chat"], prefix: key.stdout.slice(0, 12) });
    expect(JSON.stringify(row)).not.toContain(key.stdout);
    const audit = await db.db.select().from(auditLogs).where(eq(auditLogs.targetId, row?.id ?? ""));
    expect(audit.map((a) => a.action)).toEqual(["api_key.create"]);
    expect(JSON.stringify(audit)).not.toContain(key.stdout);
  });

  it("revokes a key and drops its cached identity from Redis at once", async () => {
    const tenant = (await admin("tenant", "create", "--name", "Globex")).stdout;
    const env = (await admin("env", "create", "--tenant", tenant, "--name", "dev")).stdout;
    const key = (await admin("key", "create", "--tenant", tenant, "--env", env, "--name", "tmp")).stdout;
    const cacheKey = keyCacheKey(prefix, await hashApiKey(key));
    await redis.set(cacheKey, { found: true });

    const revoked = await admin("key", "revoke", "--prefix", key.slice(0, 12));
    expect(revoked.code).toBe(0);
    expect(await redis.get(cacheKey)).toBeNull();
    const [row] = await db.db.select().from(apiKeys).where(eq(apiKeys.hash, await hashApiKey(key)));
    expect(row?.revokedAt).toBeInstanceOf(Date);
  });

  it("registers a node and prints the secret its backplane needs", async () => {
    await admin("region", "upsert", "--id", "eu-central", "--name", "Frankfurt", "--lat", "50.1", "--lon", "8.7");
    const added = await admin("node", "add", "--id", "gpu-fra-1", "--region", "eu-central", "--url", "https://gpu-fra-1.example.com", "--models", "llama-8b");
    expect(added.code).toBe(0);
    expect(added.stdout).toBe(await deriveNodeSecret(master, "gpu-fra-1", 1));
    expect((await admin("node", "secret", "--id", "gpu-fra-1")).stdout).toBe(added.stdout);
    // A node that will register itself by heartbeat gets its secret before it exists.
    const fresh = await admin("node", "secret", "--id", "gpu-new-9");
    expect(fresh.stdout).toBe(await deriveNodeSecret(master, "gpu-new-9", 1));
    expect(fresh.stderr).toContain("registers itself");
  });

  it("exits 2 with a message naming what is missing", async () => {
    const result = await admin("tenant", "create");
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("Missing --name");
    const unknown = await admin("tenant", "explode");
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('Unknown command "tenant explode"');
  });
});
