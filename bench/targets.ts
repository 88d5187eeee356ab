/**
 * The targets of the comparison (compare.ts) and what they run on: one simulated engine in fast
 * mode, the backplane alone, the full Switchyard path on plain workerd (one edge with Redis next
 * door, and one more per `redisWriteRtts` entry above 0 with Redis writes that far away), the bare
 * Hono forwarders and, unless `ownOnly`, nginx and the Portkey gateway.
 */
import { Redis } from "ioredis";
import { openDb } from "../dev/db.ts";
import { LocalNode } from "../dev/nodes.ts";
import { processTree } from "./cpu.ts";
import { distanceTarget, startDistantEdge, type DistantEdge } from "./lib/distance.ts";
import { startEdge, waitForNodes, type Edge } from "./lib/edge.ts";
import { nginxAvailable, startNginx, startNodeForwarder, startPortkey } from "./lib/peers.ts";
import { nodeSecret } from "./lib/signed.ts";
import { startHonoForwarder } from "./lib/workerd.ts";
import { NODE_HEADER } from "../schema/contracts/signing.ts";
import type { Teardown } from "./teardown.ts";

export type Mode = "nonstream" | "stream";
export const MODES: readonly Mode[] = ["nonstream", "stream"];
export const PATH = "/v1/chat/completions";
/** The node id of the benchmark's backplane. */
export const BENCH_NODE = "bench-1";
export const MODEL = "sim-llama-8b";
/** Output tokens of every answer (fixed: the engine runs with --output-tokens and ignore_eos). */
export const OUTPUT_TOKENS = 16;

export function chatBody(mode: Mode): string {
  return JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "Say something about switchyards." }], max_tokens: OUTPUT_TOKENS, stream: mode === "stream" });
}

/** What to start. */
export interface TargetOptions {
  pgAdminUrl: string;
  redisUrl: string;
  host: string;
  /** Only the project's own targets (engine, backplane, Switchyard, the two forwarders). */
  ownOnly: boolean;
  /** Redis write round trips (ms) to measure the full path at; 0 is the `switchyard` target, each other one its own edge. */
  redisWriteRtts: number[];
  teardown: Teardown;
  log: (line: string) => void;
}

/** One target: where requests go, the headers they need, and the processes that are its hop. */
export interface Target {
  name: string;
  description: string;
  url: string;
  headers: () => Record<string, string>;
  /** A backplane's node secret: every request must carry its own signature (each is accepted once). */
  signWith?: string;
  /** Processes whose CPU is this hop's (the engine's is counted separately). */
  pids: () => number[];
  /** Its own worker and backplane processes, when they are not the main edge's (the distance targets). */
  components?: () => Record<string, number[]>;
  /** A full-path target: its edge (whose /admin/metrics counts its admissions) and that edge's Redis write RTT. */
  distance?: { writeRttMs: number; edge: Edge };
}

/** The running targets. */
export interface Setup {
  edge: Edge;
  targets: Target[];
  skipped: string[];
  enginePid: () => number[];
  /** The main edge's worker and backplane processes, counted in every target's CPU columns. */
  extraPids: () => Record<string, number[]>;
}

/** Starts the edges at a distance from Redis side by side; every one that started is in `teardown` even if another failed. */
async function startDistantEdges(opts: TargetOptions, like: Edge, engineUrl: string): Promise<DistantEdge[]> {
  const rtts = [...new Set(opts.redisWriteRtts)].filter((ms) => ms > 0).sort((a, b) => a - b);
  if (rtts.length === 0) return [];
  opts.log(`Starting the full path again with every Redis write ${rtts.join(", ")} ms away (an edge and a backplane each)…`);
  const settled = await Promise.allSettled(rtts.map((writeRttMs) => startDistantEdge({ like, pgAdminUrl: opts.pgAdminUrl, host: opts.host, writeRttMs, engineUrl })));
  const started: DistantEdge[] = [];
  for (const s of settled) {
    if (s.status !== "fulfilled") continue;
    started.push(s.value);
    opts.teardown.add(`edge at ${s.value.writeRttMs} ms`, () => s.value.close());
  }
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (failed) throw failed.reason;
  return started;
}

/** Starts every target; each is registered in `opts.teardown` as it starts. */
export async function startTargets(opts: TargetOptions): Promise<Setup> {
  const { teardown, log, host } = opts;
  log("Starting the edge (worker on plain workerd, Postgres, Upstash-REST and Neon adapters)…");
  const edge = await startEdge({ pgAdminUrl: opts.pgAdminUrl, redisUrl: opts.redisUrl, host });
  teardown.add("edge", () => edge.close());

  const db = openDb(edge.databaseUrl);
  teardown.add("database client", () => db.close());
  const redis = new Redis(opts.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  teardown.add("redis client", () => Promise.resolve(redis.disconnect()));
  log("Starting the simulated engine (fast mode) and the backplane…");
  const node = new LocalNode(
    {
      id: BENCH_NODE,
      region: edge.regionId,
      simArgs: ["--ttft-ms", "0", "--inter-token-ms", "0", "--output-tokens", String(OUTPUT_TOKENS), "--max-concurrency", "1024"],
      backplaneEnv: { BACKPLANE_HEARTBEAT_INTERVAL_MS: "1000" },
      simName: "engine",
      backplaneName: "backplane",
    },
    { root: process.cwd(), host, gatewayUrl: edge.url, masterSecret: edge.nodeSigningSecret, echo: false, db, redis, redisPrefix: edge.redisPrefix },
  );
  teardown.add("node", () => node.close());
  await node.start();
  await waitForNodes(edge, [BENCH_NODE]);

  const engineUrl = node.simUrl;
  const honoWorkerd = await startHonoForwarder({ upstream: engineUrl, host });
  teardown.add("hono forwarder (workerd)", () => honoWorkerd.close());
  const honoNode = await startNodeForwarder({ upstream: engineUrl, host });
  teardown.add("hono forwarder (node)", () => honoNode.close());
  const distant = await startDistantEdges(opts, edge, engineUrl);
  log("Starting the full path again with streams tapped by the backplane (STREAM_TAP=node)…");
  const nodeTap = await startDistantEdge({ like: edge, pgAdminUrl: opts.pgAdminUrl, host, writeRttMs: 0, engineUrl, vars: { STREAM_TAP: "node" }, name: "node-tap" });
  teardown.add("edge with STREAM_TAP=node", () => nodeTap.close());

  const none = () => ({});
  const targets: Target[] = [
    { name: "engine", description: "the simulated vLLM engine, directly", url: `${engineUrl}${PATH}`, headers: none, pids: () => [] },
    {
      name: "backplane",
      description: "backplane → engine (signed request)",
      url: `${node.backplaneUrl}${PATH}`,
      // The probe signs each request itself; wrk sends a pool signed just before its run (poolSize).
      headers: () => ({ [NODE_HEADER]: BENCH_NODE }),
      signWith: await nodeSecret(edge.nodeSigningSecret, BENCH_NODE),
      pids: () => [node.backplane.process.pid ?? 0],
    },
    {
      name: "switchyard",
      description: "worker on workerd → backplane → engine (auth, 4 rate-limit layers, concurrency, budget, metering)",
      url: `${edge.url}${PATH}`,
      headers: () => ({ authorization: `Bearer ${edge.apiKey}` }),
      pids: () => [edge.workerdPid, node.backplane.process.pid ?? 0],
      distance: { writeRttMs: 0, edge },
    },
    ...distant.map(
      (d): Target => ({
        name: distanceTarget(d.writeRttMs),
        description: `the same full path with every Redis write ${d.writeRttMs} ms away (its own workerd, Upstash-REST adapter, database, Redis prefix and backplane)`,
        url: `${d.edge.url}${PATH}`,
        headers: () => ({ authorization: `Bearer ${d.edge.apiKey}` }),
        pids: () => [d.edge.workerdPid, d.backplane.process.pid ?? 0],
        components: () => ({ workerd: [d.edge.workerdPid], backplane: [d.backplane.process.pid ?? 0] }),
        distance: { writeRttMs: d.writeRttMs, edge: d.edge },
      }),
    ),
    {
      name: "switchyard-node-tap",
      description: "the same full path with STREAM_TAP=node: streams tapped by the backplane and piped natively by the worker (its own workerd, Upstash-REST adapter, database, Redis prefix and backplane)",
      url: `${nodeTap.edge.url}${PATH}`,
      headers: () => ({ authorization: `Bearer ${nodeTap.edge.apiKey}` }),
      pids: () => [nodeTap.edge.workerdPid, nodeTap.backplane.process.pid ?? 0],
      components: () => ({ workerd: [nodeTap.edge.workerdPid], backplane: [nodeTap.backplane.process.pid ?? 0] }),
    },
    { name: "hono-workerd", description: "bare Hono forwarder on workerd → engine", url: `${honoWorkerd.url}${PATH}`, headers: none, pids: () => [honoWorkerd.pid] },
    { name: "hono-node", description: "bare Hono forwarder on Node (@hono/node-server) → engine", url: `${honoNode.url}${PATH}`, headers: none, pids: () => [honoNode.pid] },
  ];
  const skipped: string[] = [];
  if (!opts.ownOnly) {
    if (nginxAvailable()) {
      const nginx = await startNginx({ upstream: engineUrl, host });
      teardown.add("nginx", () => nginx.close());
      targets.push({ name: "nginx", description: "nginx reverse proxy → engine (1 worker, keep-alive, no buffering)", url: `${nginx.url}${PATH}`, headers: none, pids: () => processTree(nginx.pid).map((p) => p.pid) });
    } else skipped.push("nginx (not installed: apt-get install nginx-light)");
    const portkey = await startPortkey({ host });
    teardown.add("portkey", () => portkey.close());
    targets.push({
      name: "portkey",
      description: "Portkey gateway (Node) → engine",
      url: `${portkey.url}${PATH}`,
      headers: () => portkey.headersFor(engineUrl),
      pids: () => processTree(portkey.pid).map((p) => p.pid),
    });
  }
  return {
    edge,
    targets,
    skipped,
    enginePid: () => [node.sim.process.pid ?? 0],
    extraPids: () => ({ workerd: [edge.workerdPid], backplane: [node.backplane.process.pid ?? 0] }),
  };
}
