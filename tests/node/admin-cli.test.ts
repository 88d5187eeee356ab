/**
 * The admin CLI's Postgres-level commands (regions, models, nodes) and how it reports mistakes.
 * Its API commands run against the real local stack in tests/e2e/admin-cli.test.ts.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Redis } from "@upstash/redis";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrateDb, openDb, type NodeDb } from "../../dev/db.ts";
import { freePort } from "../../dev/ports.ts";
import { createDatabase, dropDatabase } from "../../dev/postgres.ts";
import { writeStackRecord } from "../../dev/stack-record.ts";
import { startUpstashRestAdapter, type UpstashRestAdapter } from "../../dev/upstash-rest.ts";
import { deriveNodeSecret } from "../../schema/contracts/signing.ts";
import { auditLogs, models, nodes, regions } from "../../schema/tables/index.ts";
import { routingCacheKey } from "../../worker/src/routing/snapshot.ts";
import { deleteRedisPrefix, PG_ADMIN_URL, REDIS_URL, uniqueSuffix } from "../support/fixtures.ts";

const run = promisify(execFile);
const suffix = uniqueSuffix();
const dbName = `sy_admin_${suffix}`;
const prefix = `sy:admin:${suffix}:`;
const master = randomBytes(32).toString("hex");
const emptyDataDir = mkdtempSync(join(tmpdir(), "switchyard-admin-cli-"));
let databaseUrl: string;
let upstash: UpstashRestAdapter;
let redis: Redis;
let db: NodeDb;
const token = randomBytes(16).toString("hex");

async function admin(args: string[], env: Record<string, string> = {}): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ["worker/cli/admin.ts", ...args], {
      env: {
        ...process.env,
        DATABASE_URL: databaseUrl,
        UPSTASH_REDIS_REST_URL: upstash.url,
        UPSTASH_REDIS_REST_TOKEN: token,
        REDIS_PREFIX: prefix,
        NODE_SIGNING_SECRET: master,
        SWITCHYARD_ADMIN_TOKEN: "",
        SWITCHYARD_URL: "",
        SWITCHYARD_DATA_DIR: emptyDataDir,
        ...env,
      },
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
  rmSync(emptyDataDir, { recursive: true, force: true });
});

describe("admin CLI infrastructure commands (Postgres)", () => {
  it("registers a node and prints the secret its backplane needs", async () => {
    const region = await admin(["region", "upsert", "--id", "eu-central", "--name", "Frankfurt", "--lat", "50.1", "--lon", "8.7"]);
    expect(region.code).toBe(0);
    const added = await admin(["node", "add", "--id", "gpu-fra-1", "--region", "eu-central", "--url", "https://gpu-fra-1.example.com", "--models", "llama-8b"]);
    expect(added.code).toBe(0);
    expect(added.stdout).toBe(await deriveNodeSecret(master, "gpu-fra-1", 1));
    expect(added.stderr).toContain("BACKPLANE_SECRET");
    expect((await admin(["node", "secret", "--id", "gpu-fra-1"])).stdout).toBe(added.stdout);
    const [row] = await db.db.select().from(nodes).where(eq(nodes.id, "gpu-fra-1"));
    expect(row).toMatchObject({ regionId: "eu-central", url: "https://gpu-fra-1.example.com", models: ["llama-8b"] });
    // A node that will register itself by heartbeat gets its secret before it exists.
    const fresh = await admin(["node", "secret", "--id", "gpu-new-9"]);
    expect(fresh.stdout).toBe(await deriveNodeSecret(master, "gpu-new-9", 1));
    expect(fresh.stderr).toContain("registers itself");
  });

  it("upserts regions and models, audits them and drops the gateway's routing snapshot", async () => {
    await redis.set(routingCacheKey(prefix), { stale: true });
    const model = await admin(["model", "upsert", "--id", "llama-70b", "--context", "32768", "--family", "llama", "--input-price", "0.5", "--output-price", "0.9"]);
    expect(model.code).toBe(0);
    expect(await redis.get(routingCacheKey(prefix))).toBeNull();
    const [row] = await db.db.select().from(models).where(eq(models.id, "llama-70b"));
    expect(row).toMatchObject({ kind: "chat", contextLength: 32768, inputPricePerMTokens: "0.500000" });

    await admin(["region", "upsert", "--id", "us-east", "--name", "Virginia", "--lat", "38.9", "--lon=-77.0"]);
    await admin(["region", "upsert", "--id", "us-east", "--name", "N. Virginia", "--lat", "38.9", "--lon=-77.0", "--multiplier", "1.25"]);
    const [r] = await db.db.select().from(regions).where(eq(regions.id, "us-east"));
    expect(r?.name).toBe("N. Virginia");
    expect(Number(r?.priceMultiplier)).toBe(1.25);
    const audit = await db.db.select().from(auditLogs).where(eq(auditLogs.targetId, "us-east"));
    expect(audit.map((a) => a.action)).toEqual(["region.upsert", "region.upsert"]);
  });

  it("needs DATABASE_URL and NODE_SIGNING_SECRET for node commands (exit 2)", async () => {
    const noDb = await admin(["node", "secret", "--id", "gpu-1"], { DATABASE_URL: "" });
    expect(noDb.code).toBe(2);
    expect(noDb.stderr).toContain("DATABASE_URL");
    const noSecret = await admin(["node", "secret", "--id", "gpu-1"], { NODE_SIGNING_SECRET: "" });
    expect(noSecret.code).toBe(2);
    expect(noSecret.stderr).toContain("NODE_SIGNING_SECRET");
  });
});

describe("admin CLI errors", () => {
  it("exits 2 with a message naming what is missing or unknown", async () => {
    const missing = await admin(["tenant", "create"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("Missing --name");
    const unknown = await admin(["tenant", "explode"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('Unknown command "tenant explode"');
    const flag = await admin(["tenant", "list", "--colour", "red"]);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain("--colour");
    const help = await admin(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("key rotate ID");
  });

  it("exits 2 when no admin token can be found, naming the three places it looks", async () => {
    const result = await admin(["tenant", "list"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("--token");
    expect(result.stderr).toContain("SWITCHYARD_ADMIN_TOKEN");
    expect(result.stderr).toContain(join(emptyDataDir, "admin-token"));
  });

  it("uses the admin token of the local stack at --url, whatever SWITCHYARD_DATA_DIR that stack was started with", async () => {
    const stackDir = mkdtempSync(join(tmpdir(), "switchyard-admin-cli-stack-"));
    writeFileSync(join(stackDir, "admin-token"), "token-of-the-other-stack\n");
    const seen: (string | undefined)[] = [];
    const gateway = createServer((req, res) => {
      seen.push(req.headers.authorization);
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ object: "list", data: [], next_cursor: null }));
    });
    gateway.listen(0, "127.0.0.1");
    await once(gateway, "listening");
    const url = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`;
    const removeRecord = writeStackRecord(url, stackDir);
    try {
      // The shell running the CLI has no SWITCHYARD_DATA_DIR; the stack was started with another one.
      const result = await admin(["tenant", "list", "--url", url], { SWITCHYARD_DATA_DIR: "" });
      expect(result).toMatchObject({ code: 0, stdout: "(none)" });
      expect(seen).toEqual(["Bearer token-of-the-other-stack"]);
    } finally {
      removeRecord();
      gateway.close();
      rmSync(stackDir, { recursive: true, force: true });
    }
  });

  it("applies a catalogue document only with --apply", async () => {
    const seen: string[] = [];
    const gateway = createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      const plan = { object: "catalogue.plan", dry_run: !(req.url ?? "").includes("apply=true"), create: ["m1"], update: [], deactivate: [], unchanged: [] };
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(plan));
    });
    gateway.listen(0, "127.0.0.1");
    await once(gateway, "listening");
    const url = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`;
    const file = join(emptyDataDir, "catalogue.yaml");
    writeFileSync(file, "models:\n  - id: m1\n    context_length: 4096\n");
    try {
      expect((await admin(["model", "apply", file, "--url", url, "--token", "t"])).code).toBe(0);
      expect((await admin(["model", "apply", file, "--apply", "--url", url, "--token", "t"])).code).toBe(0);
      expect(seen).toEqual(["PUT /admin/models/configured", "PUT /admin/models/configured?apply=true"]);
    } finally {
      gateway.close();
    }
  });

  it("sets an environment's conversation audit with --audit, and refuses a mode that does not exist", async () => {
    const seen: string[] = [];
    const gateway = createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString("utf8")));
      req.on("end", () => {
        seen.push(`${req.method} ${req.url} ${body}`);
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ object: "environment", id: "env_1", audit_mode: "full" }));
      });
    });
    gateway.listen(0, "127.0.0.1");
    await once(gateway, "listening");
    const url = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`;
    try {
      expect((await admin(["env", "update", "env_1", "--audit", "full", "--url", url, "--token", "t"])).code).toBe(0);
      expect(seen).toHaveLength(1);
      expect(seen[0]).toMatch(/^PATCH \/admin\/environments\/env_1 /);
      expect(JSON.parse(seen[0]?.replace(/^PATCH \S+ /, "") ?? "{}")).toMatchObject({ audit_mode: "full" });
      const wrong = await admin(["env", "update", "env_1", "--audit", "everything", "--url", url, "--token", "t"]);
      expect(wrong.code).toBe(2);
      expect(wrong.stderr).toContain("--audit must be off, metadata or full");
      expect(seen).toHaveLength(1);
    } finally {
      gateway.close();
    }
  });

  it("turns an environment's caches off with --cache off, sets a model's --cache-hit-factor, purges a tenant's cache, and refuses other values before any call", async () => {
    const seen: string[] = [];
    const gateway = createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString("utf8")));
      req.on("end", () => {
        seen.push(`${req.method} ${req.url} ${body}`);
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ object: "environment", id: "env_1", cache_enabled: false }));
      });
    });
    gateway.listen(0, "127.0.0.1");
    await once(gateway, "listening");
    const url = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`;
    const bodyOf = (line: string | undefined) => JSON.parse(line?.replace(/^\S+ \S+ /, "") ?? "{}") as Record<string, unknown>;
    try {
      expect((await admin(["env", "update", "env_1", "--cache", "off", "--url", url, "--token", "t"])).code).toBe(0);
      expect(seen[0]).toMatch(/^PATCH \/admin\/environments\/env_1 /);
      expect(bodyOf(seen[0])).toEqual({ cache_enabled: false });
      expect((await admin(["env", "update", "env_1", "--cache", "on", "--url", url, "--token", "t"])).code).toBe(0);
      expect(bodyOf(seen[1])).toEqual({ cache_enabled: true });
      expect((await admin(["model", "set", "m1", "--cache-hit-factor", "0.25", "--url", url, "--token", "t"])).code).toBe(0);
      expect(seen[2]).toMatch(/^PUT \/admin\/models\/m1 /);
      expect(bodyOf(seen[2])).toEqual({ cache_hit_price_factor: 0.25 });
      const wrong = await admin(["env", "update", "env_1", "--cache", "maybe", "--url", url, "--token", "t"]);
      expect(wrong.code).toBe(2);
      expect(wrong.stderr).toContain("--cache must be on or off");
      const tooHigh = await admin(["model", "set", "m1", "--cache-hit-factor", "2", "--url", url, "--token", "t"]);
      expect(tooHigh.code).toBe(2);
      expect(tooHigh.stderr).toContain("--cache-hit-factor must be a number from 0");
      expect(seen).toHaveLength(3);
      expect((await admin(["cache", "purge", "ten_1", "--url", url, "--token", "t"])).code).toBe(0);
      expect(seen[3]).toMatch(/^DELETE \/admin\/cache\/ten_1 /);
    } finally {
      gateway.close();
    }
  });

  it("exits 1 with a clear message when the gateway cannot be reached", async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const result = await admin(["tenant", "list", "--url", url, "--token", "t"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`Cannot reach the gateway at ${url}`);
  });
});
