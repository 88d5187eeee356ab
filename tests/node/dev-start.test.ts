/**
 * `npm start` (dev/start.ts) as a user runs it: a real child process, real Postgres and Redis.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type AddressInfo, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { freePort } from "../../dev/ports.ts";
import { createDatabase, dropDatabase } from "../../dev/postgres.ts";
import { ROOT } from "../../dev/stack.ts";
import { deleteRedisPrefix, PG_ADMIN_URL, REDIS_URL, uniqueSuffix } from "../support/fixtures.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Runs `npm start`'s script with `env` and `args`, collecting its output; stopped (SIGTERM) after the test. */
function start(env: Record<string, string>, args: string[] = []): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const dataDir = mkdtempSync(join(tmpdir(), "switchyard-start-"));
  const child = spawn(process.execPath, ["dev/start.ts", ...args], {
    cwd: ROOT,
    env: { ...process.env, SWITCHYARD_DATA_DIR: dataDir, SWITCHYARD_QUIET: "1", REDIS_URL, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let text = "";
  child.stdout.on("data", (chunk: Buffer) => (text += chunk.toString("utf8")));
  child.stderr.on("data", (chunk: Buffer) => (text += chunk.toString("utf8")));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      await exited;
    }
    rmSync(dataDir, { recursive: true, force: true });
  });
  return { child, output: () => text, exited };
}

async function holdPort(): Promise<{ server: Server; port: number }> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { server, port: (server.address() as AddressInfo).port };
}

describe("npm start", () => {
  it("fails at once, naming the port, when the gateway port is already in use", async () => {
    const { port } = await holdPort();
    const began = Date.now();
    const run = start({ PORT: String(port), DATABASE_URL: "" });
    expect(await run.exited).toBe(1);
    expect(Date.now() - began).toBeLessThan(10_000);
    expect(run.output()).toContain(`Switchyard could not start: port ${port} is in use`);
    // Nothing was started: no Postgres, no backplane heartbeating into whatever holds the port.
    expect(run.output()).not.toContain("Starting Postgres");
    expect(run.output()).not.toContain("Starting backplane");
  });

  it("says what it is starting while it starts", async () => {
    const suffix = uniqueSuffix();
    const dbName = `sy_start_${suffix}`;
    const redisPrefix = `sy:start:${suffix}:`;
    const databaseUrl = await createDatabase(PG_ADMIN_URL, dbName);
    cleanups.push(async () => {
      await dropDatabase(PG_ADMIN_URL, dbName);
      await deleteRedisPrefix(redisPrefix);
    });
    const run = start({ PORT: String(await freePort()), DATABASE_URL: databaseUrl, SWITCHYARD_REDIS_PREFIX: redisPrefix });
    // Progress appears step by step, long before the gateway answers (wrangler dev alone takes seconds).
    await expect.poll(run.output, { timeout: 30_000, interval: 100 }).toContain("Starting worker (wrangler dev)");
    const lines = run.output().split("\n").filter((l) => l.startsWith("Starting "));
    expect(lines.slice(0, 6)).toEqual([
      "Starting Redis connection check…",
      "Starting Postgres (DATABASE_URL) and migrations…",
      "Starting Redis adapter (Upstash REST) and Neon WebSocket pipe…",
      "Starting simulated engine local-1…",
      "Starting backplane local-1…",
      expect.stringMatching(/^Starting worker \(wrangler dev\) on http:\/\/127\.0\.0\.1:\d+…$/),
    ]);
    // Stopped half-way, it stops what it started: no engine or backplane is left behind.
    run.child.kill("SIGTERM");
    expect(await run.exited).toBe(0);
    expect(run.output()).toContain("Stopping Switchyard…");
  });

  it("refuses a Redis round trip that is not a whole number of milliseconds, with the usage", async () => {
    const run = start({}, ["--redis-write-rtt-ms", "20000"]);
    expect(await run.exited).toBe(2);
    expect(run.output()).toContain('--redis-write-rtt-ms must be a whole number of milliseconds from 0 to 10000, got "20000"');
    expect(run.output()).toContain("Usage: npm start");
    const read = start({}, ["--redis-read-rtt-ms", "1.5"]);
    expect(await read.exited).toBe(2);
    expect(read.output()).toContain('--redis-read-rtt-ms must be a whole number of milliseconds from 0 to 10000, got "1.5"');
  });

  it("puts Redis at the given distance and says so in the banner", async () => {
    const suffix = uniqueSuffix();
    const dbName = `sy_start_${suffix}`;
    const redisPrefix = `sy:start:${suffix}:`;
    const databaseUrl = await createDatabase(PG_ADMIN_URL, dbName);
    cleanups.push(async () => {
      await dropDatabase(PG_ADMIN_URL, dbName);
      await deleteRedisPrefix(redisPrefix);
    });
    const run = start({ PORT: String(await freePort()), DATABASE_URL: databaseUrl, SWITCHYARD_REDIS_PREFIX: redisPrefix }, ["--redis-write-rtt-ms", "80", "--redis-read-rtt-ms", "0"]);
    await expect.poll(() => run.output().includes("Press Ctrl-C to stop.") || run.child.exitCode !== null, { timeout: 90_000, interval: 200 }).toBe(true);
    expect(run.output()).toContain("Press Ctrl-C to stop.");
    expect(run.output()).toContain("Redis distance (modelled by the local Upstash adapter): writes +80 ms, reads +0 ms per request");
  }, 120_000);
});
