/**
 * The local stack for one chaos scenario: a fresh database on the machine's Postgres, its own Redis
 * prefix and data folder, two nodes in one region by default (so a failing node has a peer to fail
 * over to), and optionally cuttable proxies in front of Redis and Postgres. The machine's servers are
 * shared with other sessions and CI and are never stopped: "Redis down" and "Postgres down" cut the
 * stack's proxy to them (tcp-proxy.ts).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDb, type NodeDb } from "../../dev/db.ts";
import { createDatabase, dropDatabase } from "../../dev/postgres.ts";
import { freePort } from "../../dev/ports.ts";
import { ROOT, startStack, type Stack, type StackNode, type StackOptions } from "../../dev/stack.ts";
import type { Topology, TopologyNode } from "../../dev/topology.ts";
import { deleteRedisPrefix, PG_ADMIN_URL, REDIS_URL, uniqueSuffix } from "../support/fixtures.ts";
import { TcpProxy } from "./tcp-proxy.ts";

/** Bound on one scenario: its stack's start, about a minute of traffic and breakage, the usage check (up to 2 min) and the stop. */
export const SCENARIO_TIMEOUT_MS = 360_000;

/** The region every scenario's nodes are in. */
export const CHAOS_REGION = "chaos";

/**
 * Two nodes, `chaos-1` and `chaos-2`, in region `chaos`. The engines answer slowly enough (40 ms to
 * the first token, 15 ms per token) that streams are still running when a scenario breaks something.
 */
export function twoNodeTopology(extra: Partial<Record<"chaos-1" | "chaos-2", Partial<TopologyNode>>> = {}): Topology {
  const node = (id: "chaos-1" | "chaos-2"): TopologyNode => ({ id, region: CHAOS_REGION, sim: { ttftMs: 40, interTokenMs: 15 }, ...extra[id] });
  return {
    regions: [{ id: CHAOS_REGION, name: "Chaos", latitude: 0, longitude: 0, priceMultiplier: 1 }],
    nodes: [node("chaos-1"), node("chaos-2")],
  };
}

/** A started scenario stack. */
export interface ChaosStack {
  stack: Stack;
  /** A connection to the stack's database that bypasses any proxy: the scenario's view of Postgres. */
  db: NodeDb;
  /** The proxy between the stack and Redis, when asked for. */
  redisProxy?: TcpProxy;
  /** The proxy between the stack and Postgres, when asked for. */
  postgresProxy?: TcpProxy;
  node(id: string): StackNode;
  close(): Promise<void>;
}

/** Options: the stack's own (topology, worker vars, …) and which dependencies get a cuttable proxy. */
export interface ChaosStackOptions extends Partial<Pick<StackOptions, "simArgs" | "backplaneEnv" | "topology" | "workerVars" | "gatewayPort">> {
  proxyRedis?: boolean;
  proxyPostgres?: boolean;
}

function withPort(url: string, port: number): string {
  const parsed = new URL(url);
  parsed.port = String(port);
  return parsed.toString();
}

/** Starts the stack for scenario `name`; `close()` stops it and removes its database, prefix and folder. */
export async function startChaosStack(name: string, opts: ChaosStackOptions = {}): Promise<ChaosStack> {
  const { proxyRedis = false, proxyPostgres = false, ...stackOpts } = opts;
  const suffix = uniqueSuffix();
  const dbName = `sy_chaos_${name.replace(/[^a-z0-9]/g, "_")}_${suffix}`;
  const redisPrefix = `sy:chaos-${name}:${suffix}:`;
  const dataDir = mkdtempSync(join(tmpdir(), `switchyard-chaos-${name}-`));
  const databaseUrl = await createDatabase(PG_ADMIN_URL, dbName);
  const redisPort = Number(new URL(REDIS_URL).port || 6379);
  const postgresPort = Number(new URL(databaseUrl).port || 5432);
  const redisProxy = proxyRedis ? await TcpProxy.start({ target: () => redisPort }) : undefined;
  const postgresProxy = proxyPostgres ? await TcpProxy.start({ target: () => postgresPort }) : undefined;
  const db = openDb(databaseUrl);
  const cleanup = async () => {
    await db.close();
    await redisProxy?.close();
    await postgresProxy?.close();
    await dropDatabase(PG_ADMIN_URL, dbName);
    await deleteRedisPrefix(redisPrefix);
    rmSync(dataDir, { recursive: true, force: true });
  };
  let stack: Stack;
  try {
    stack = await startStack({
      dataDir,
      databaseUrl: postgresProxy ? withPort(databaseUrl, postgresProxy.port) : databaseUrl,
      redisUrl: redisProxy ? withPort(REDIS_URL, redisProxy.port) : REDIS_URL,
      redisPrefix,
      host: "127.0.0.1",
      gatewayPort: 0,
      simArgs: [],
      echo: process.env.CHAOS_ECHO === "1",
      topology: twoNodeTopology(),
      ...stackOpts,
    });
  } catch (err) {
    await cleanup();
    throw err;
  }
  let closing: Promise<void> | undefined;
  return {
    stack,
    db,
    redisProxy,
    postgresProxy,
    node: (id) => {
      const found = stack.nodes.find((n) => n.id === id);
      if (!found) throw new Error(`no node ${id}`);
      return found;
    },
    close: () =>
      (closing ??= (async () => {
        // The dependencies come back first, so the stack's last heartbeats and flushes do not hang.
        redisProxy?.set("up");
        postgresProxy?.set("up");
        await stack.close();
        await cleanup();
      })()),
  };
}

/** Resolves after `ms`. */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls until `check` holds (then returns true) or `timeoutMs` passes (false). */
export async function waitFor(check: () => Promise<boolean>, timeoutMs: number, everyMs = 250): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return true;
    if (Date.now() > deadline) return false;
    await sleep(everyMs);
  }
}

/** Backplane settings that preload dev/fake-clock.ts (tests only): the process's wall clock runs `file`'s milliseconds off. */
export function fakeClockEnv(file: string): Record<string, string> {
  return { NODE_OPTIONS: `--import ${join(ROOT, "dev/fake-clock.ts")}`, SWITCHYARD_TEST_CLOCK_OFFSET_FILE: file };
}

/** A stack whose node `chaos-2` and gateway reach each other only through two proxies that a partition cuts. */
export interface PartitionableStack extends ChaosStack {
  /** Both directions start dropping every byte (open connections hang, new ones are never answered). */
  partition(): void;
  /** Bytes flow again; connections held during the partition are reset. */
  heal(): void;
}

/**
 * Starts a two-node stack where `chaos-2`'s public URL and its way to the gateway go through proxies on
 * loopback (`BACKPLANE_PUBLIC_URL`, `BACKPLANE_GATEWAY_URL`). `UPSTREAM_CONNECT_TIMEOUT_MS` is lowered
 * to `connectTimeoutMs`, so a call sent to the cut-off node before it goes stale moves on sooner than the default 30 s.
 */
export async function startPartitionableStack(name: string, connectTimeoutMs: number): Promise<PartitionableStack> {
  const gatewayPort = await freePort();
  let backplanePort = 0;
  const toGateway = await TcpProxy.start({ target: () => gatewayPort });
  const toBackplane = await TcpProxy.start({ target: () => backplanePort });
  let started: ChaosStack;
  try {
    started = await startChaosStack(name, {
      gatewayPort,
      workerVars: { UPSTREAM_CONNECT_TIMEOUT_MS: String(connectTimeoutMs) },
      topology: twoNodeTopology({
        "chaos-2": { backplaneEnv: { BACKPLANE_PUBLIC_URL: `http://127.0.0.1:${toBackplane.port}`, BACKPLANE_GATEWAY_URL: `http://127.0.0.1:${toGateway.port}` } },
      }),
    });
  } catch (err) {
    await toGateway.close();
    await toBackplane.close();
    throw err;
  }
  // The gateway learns the proxy's URL from the node's heartbeats and calls it only once it routes there.
  backplanePort = Number(new URL(started.node("chaos-2").backplaneUrl).port);
  return {
    ...started,
    partition: () => {
      toGateway.set("blackhole");
      toBackplane.set("blackhole");
    },
    heal: () => {
      toGateway.set("up");
      toBackplane.set("up");
    },
    close: async () => {
      toGateway.set("up");
      toBackplane.set("up");
      await started.close();
      await toGateway.close();
      await toBackplane.close();
    },
  };
}
