/**
 * The deployment the exactness run (exactness.ts) drives: one edge (bench/lib/edge.ts: a fresh
 * database and Redis prefix, the scheduled job run once), more workerd processes of the same
 * deployment (bench/lib/isolates.ts), and one simulated engine behind its backplane; with the admin
 * API and the metering the run reads its figures from.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { eq } from "drizzle-orm";
import { Redis } from "ioredis";
import { openDb, type NodeDb } from "../dev/db.ts";
import { LocalNode } from "../dev/nodes.ts";
import { usageRecords } from "../schema/tables/index.ts";
import { findApiKey } from "../worker/src/admin/store.ts";
import { newTally, oneRound, type Traffic } from "./exactness-clients.ts";
import { startEdge, waitForNodes, type Edge } from "./lib/edge.ts";
import { startIsolate } from "./lib/isolates.ts";
import { bundleWorker, readWorkerConfig, ROOT } from "./lib/worker-bundle.ts";
import type { Teardown } from "./teardown.ts";

/** The model every request asks for. */
export const MODEL = "sim-llama-8b";
const NODE_ID = "exact-1";
const METERING_TIMEOUT_MS = 15_000;

/** The running deployment. */
export interface Deployment {
  /** The first workerd: it also serves the admin API and runs the scheduled job. */
  edge: Edge;
  /** Base URLs of every workerd, the edge's first. */
  urls: string[];
  db: NodeDb;
}

/** Where and how to start it. */
export interface DeploymentOptions {
  pgAdminUrl: string;
  redisUrl: string;
  host?: string;
  workerds: number;
  vars?: Record<string, string>;
}

/** One edge (startEdge: database, Redis prefix, scheduled job run once), its sibling isolates, and one engine with its backplane. */
export async function startDeployment(opts: DeploymentOptions, teardown: Teardown): Promise<Deployment> {
  const host = opts.host ?? "127.0.0.1";
  const workDir = await mkdtemp(join(tmpdir(), "sy-exactness-"));
  teardown.add("bundle folder", () => rm(workDir, { recursive: true, force: true }));
  const [bundle, config] = await Promise.all([bundleWorker(join(workDir, "bundle")), readWorkerConfig()]);
  const edge = await startEdge({ pgAdminUrl: opts.pgAdminUrl, redisUrl: opts.redisUrl, host, bundle, config, vars: opts.vars });
  teardown.add("edge", () => edge.close());
  const db = openDb(edge.databaseUrl);
  teardown.add("database client", () => db.close());
  const redis = new Redis(opts.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  redis.on("error", () => {});
  teardown.add("redis client", () => Promise.resolve(redis.disconnect()));
  const node = new LocalNode(
    {
      id: NODE_ID,
      region: edge.regionId,
      // Output is always exactly max_tokens (EOS never comes first), so the real cost is fixed.
      simArgs: ["--ttft-ms", "5", "--inter-token-ms", "0", "--output-tokens", "1000000", "--max-concurrency", "256"],
      backplaneEnv: { BACKPLANE_HEARTBEAT_INTERVAL_MS: "1000" },
      simName: "engine",
      backplaneName: "backplane",
    },
    { root: ROOT, host, gatewayUrl: edge.url, masterSecret: edge.nodeSigningSecret, echo: false, db, redis, redisPrefix: edge.redisPrefix },
  );
  // Added after the edge, so it stops first: its last heartbeat still reaches the worker.
  teardown.add("node", () => node.close());
  const siblings = Array.from({ length: opts.workerds - 1 }, () => startIsolate(edge, { bundle, config, host, vars: opts.vars }));
  for (const [i, sibling] of siblings.entries()) teardown.add(`workerd ${i + 2}`, () => sibling.then((s) => s.close(), () => {}));
  // All settle before a failure is raised, so every started process is known to the clean-up.
  const settled = await Promise.allSettled([node.start(), ...siblings]);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (failed) throw failed.reason;
  await waitForNodes(edge, [NODE_ID]);
  const urls = [edge.url, ...(await Promise.all(siblings)).map((s) => s.url)];
  return { edge, urls, db };
}

/**
 * The real cost of one request (micro-USD, as metered): a streamed and a non-streamed request
 * through every workerd with the edge's demo key, which also shows each of them routes to the node.
 */
export async function measureRequestCost(deployment: Deployment, maxTokens: number): Promise<number> {
  const { edge, urls, db } = deployment;
  const warmup: Traffic = { urls, apiKey: edge.apiKey, model: MODEL, maxTokens, concurrency: urls.length * 2, refusalCode: "none" };
  const tally = newTally(urls.length);
  await oneRound(warmup, tally, 0);
  if (tally.admitted !== warmup.concurrency) throw new Error(`warm-up: ${tally.admitted} of ${warmup.concurrency} requests were served: ${tally.errorSamples.join("; ")}`);
  const demoKey = await findApiKey(db.db, edge.apiKey);
  if (!demoKey) throw new Error("warm-up: the demo key is not in the database");
  const metered = await meter(deployment, demoKey.id, warmup.concurrency);
  if (metered.served !== warmup.concurrency) throw new Error(`warm-up: ${metered.served} of ${warmup.concurrency} served requests were metered`);
  return metered.maxCost;
}

/** What usage_records hold for a key. */
export interface Metered {
  /** Requests recorded as served (HTTP 200). */
  served: number;
  /** Sum of cost_micros over all its records (refused ones cost 0). */
  spend: number;
  /** The dearest record. */
  maxCost: number;
}

/** Runs the scheduled job (it moves usage from Redis to Postgres) until `served` requests of the key are recorded, or METERING_TIMEOUT_MS has passed. */
export async function meter(deployment: Deployment, keyId: string, served: number): Promise<Metered> {
  const deadline = Date.now() + METERING_TIMEOUT_MS;
  for (;;) {
    await deployment.edge.runScheduled();
    const rows = await deployment.db.db.select({ status: usageRecords.httpStatus, cost: usageRecords.costMicros }).from(usageRecords).where(eq(usageRecords.apiKeyId, keyId));
    const metered = {
      served: rows.filter((r) => r.status === 200).length,
      spend: rows.reduce((sum, r) => sum + r.cost, 0),
      maxCost: rows.reduce((max, r) => Math.max(max, r.cost), 0),
    };
    if (metered.served >= served || Date.now() > deadline) return metered;
    await sleep(200);
  }
}

/** Calls the admin API of the edge with its ADMIN_TOKEN; throws on anything but a 2xx. */
export function adminClient(edge: Edge) {
  return async <T = unknown>(method: string, path: string, body?: unknown): Promise<T> => {
    const res = await fetch(`${edge.url}/admin${path}`, {
      method,
      headers: { authorization: `Bearer ${edge.adminToken}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(15_000),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} /admin${path}: HTTP ${res.status} ${text.slice(0, 300)}`);
    return JSON.parse(text) as T;
  };
}
