/**
 * The response and embeddings caches (docs/caching.md) through the full path: the worker bundle on
 * plain workerd with every policy on (bench/lib/edge.ts), a backplane and a simulated engine timed
 * like a real model: an embeddings batch takes 20 ms (`--embed-ms`), a 32-token chat answer 300 ms
 * (44 ms to the first token, then 8 ms per token). Concurrency 1, keep-alive:
 *
 * - hit against miss latency: each round sends a request never seen (a miss: the GPU answers and the
 *   gateway stores it) and then the same request again (a hit: answered from Redis), for a one-input
 *   embeddings call and for a temperature-0 chat call; every hit's body must equal its miss's apart
 *   from the per-request id and time (else the run fails).
 * - GPU requests avoided on a workload with repeats: requests drawn from a pool of distinct ones
 *   (a fixed pseudo-random order), counted at the engine (its /metrics) before and after.
 */
import { Redis } from "ioredis";
import { openDb } from "../dev/db.ts";
import { LocalNode } from "../dev/nodes.ts";
import { startEdge, waitForNodes } from "./lib/edge.ts";
import { percentile } from "./stats.ts";
import type { Teardown } from "./teardown.ts";

/** The simulated engine's timing: 20 ms per embeddings batch, 44 + 32 × 8 = 300 ms per 33-token chat answer. */
export const CACHE_SIM_ARGS = ["--embed-ms", "20", "--ttft-ms", "44", "--inter-token-ms", "8", "--output-tokens", "33"];

/** Hit and miss latency of one kind of request, ms. */
export interface CacheLatencyRow {
  kind: "embeddings" | "chat";
  rounds: number;
  missP50: number | null;
  missP99: number | null;
  hitP50: number | null;
  hitP99: number | null;
  /** Miss p50 / hit p50. */
  speedup: number | null;
}

/** The workload with repeats. */
export interface CacheWorkloadRow {
  kind: "embeddings" | "chat";
  requests: number;
  distinct: number;
  hits: number;
  /** Requests the engine served (its request_success_total grew by this). */
  gpuRequests: number;
  avoided: number;
}

export interface CacheBenchResult {
  simArgs: string[];
  latency: CacheLatencyRow[];
  workload: CacheWorkloadRow[];
  errors: string[];
}

export interface CacheBenchOptions {
  pgAdminUrl: string;
  redisUrl: string;
  host: string;
  rounds: number;
  /** Requests in each workload, drawn from `rounds` distinct ones… */
  workloadRequests: number;
  /** …of this many distinct requests. */
  workloadDistinct: number;
  teardown: Teardown;
  log: (line: string) => void;
}

async function engineRequests(simUrl: string, model: string): Promise<number> {
  const text = await (await fetch(`${simUrl}/metrics`)).text();
  return text
    .split("\n")
    .filter((l) => l.startsWith("vllm:request_success_total{") && l.includes(`model_name="${model}"`))
    .reduce((s, l) => s + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
}

/**
 * What a hit must repeat: a chat answer without its per-request id and time; an embeddings answer's
 * vectors (its usage is the GPU's work, none on a hit: docs/caching.md).
 */
function comparable(text: string): string {
  const body = JSON.parse(text) as Record<string, unknown>;
  if (body.object === "list") return JSON.stringify(body.data);
  delete body.id;
  delete body.created;
  return JSON.stringify(body);
}

function row(kind: CacheLatencyRow["kind"], misses: number[], hits: number[]): CacheLatencyRow {
  const m = [...misses].sort((a, b) => a - b);
  const h = [...hits].sort((a, b) => a - b);
  const missP50 = percentile(m, 50);
  const hitP50 = percentile(h, 50);
  return { kind, rounds: misses.length, missP50, missP99: percentile(m, 99), hitP50, hitP99: percentile(h, 99), speedup: missP50 !== null && hitP50 !== null && hitP50 > 0 ? missP50 / hitP50 : null };
}

export async function runCacheBench(opts: CacheBenchOptions): Promise<CacheBenchResult> {
  const { teardown, log, host } = opts;
  log("Cache benchmark: an edge, a backplane and an engine timed like a real model (20 ms per embeddings batch, 300 ms per chat answer)…");
  const edge = await startEdge({ pgAdminUrl: opts.pgAdminUrl, redisUrl: opts.redisUrl, host });
  teardown.add("cache edge", () => edge.close());
  const db = openDb(edge.databaseUrl);
  teardown.add("cache database client", () => db.close());
  const redis = new Redis(opts.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  teardown.add("cache redis client", () => Promise.resolve(redis.disconnect()));
  const node = new LocalNode(
    { id: "cache-node", region: edge.regionId, simArgs: CACHE_SIM_ARGS, backplaneEnv: { BACKPLANE_HEARTBEAT_INTERVAL_MS: "500" }, simName: "cache-sim", backplaneName: "cache-bp" },
    { root: process.cwd(), host, gatewayUrl: edge.url, masterSecret: edge.nodeSigningSecret, echo: false, db, redis, redisPrefix: edge.redisPrefix },
  );
  teardown.add("cache node", () => node.close());
  await node.start();
  await waitForNodes(edge, [node.id]);

  const errors: string[] = [];
  const run = Math.random().toString(16).slice(2, 8);
  const call = async (path: string, body: unknown): Promise<{ ms: number; text: string; cache: string | null }> => {
    const started = performance.now();
    const res = await fetch(`${edge.url}${path}`, { method: "POST", headers: { authorization: `Bearer ${edge.apiKey}`, "content-type": "application/json" }, body: JSON.stringify(body) });
    const text = await res.text();
    const ms = performance.now() - started;
    if (res.status !== 200) errors.push(`${path}: HTTP ${res.status} ${text.slice(0, 200)}`);
    return { ms, text, cache: res.headers.get("x-switchyard-cache") };
  };
  const requests = {
    embeddings: (i: number) => ["/v1/embeddings", { model: "sim-embed", input: `cache bench ${run} document number ${i}, a paragraph of text to embed` }] as const,
    chat: (i: number) => ["/v1/chat/completions", { model: "sim-llama-8b", temperature: 0, max_tokens: 64, messages: [{ role: "user", content: `cache bench ${run} question ${i}: what does a switchyard do?` }] }] as const,
  };

  // Warm-up: identity, routing view, leases and connections.
  for (let i = 0; i < 3; i++) {
    await call(...requests.embeddings(-1 - i));
    await call(...requests.chat(-1 - i));
  }
  const latency: CacheLatencyRow[] = [];
  for (const kind of ["embeddings", "chat"] as const) {
    log(`Cache: ${kind}, ${opts.rounds} rounds of a miss then its hit…`);
    const misses: number[] = [];
    const hits: number[] = [];
    for (let i = 0; i < opts.rounds; i++) {
      const [path, body] = requests[kind](i);
      const miss = await call(path, body);
      // The miss's store runs in waitUntil: a moment for it to land, as a real repeat would come later.
      await new Promise((r) => setTimeout(r, 5));
      const hit = await call(path, body);
      if (miss.cache !== "miss" || hit.cache !== "hit") errors.push(`${kind} round ${i}: x-switchyard-cache ${miss.cache} then ${hit.cache}, expected miss then hit`);
      else if (comparable(miss.text) !== comparable(hit.text)) errors.push(`${kind} round ${i}: the hit's body differs from the miss's`);
      misses.push(miss.ms);
      hits.push(hit.ms);
    }
    latency.push(row(kind, misses, hits));
  }

  const workload: CacheWorkloadRow[] = [];
  // A fixed pseudo-random order (xorshift), so every run sends the same sequence.
  let seed = 0x9e3779b9;
  const next = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 2 ** 32;
  };
  for (const kind of ["embeddings", "chat"] as const) {
    log(`Cache: ${kind} workload, ${opts.workloadRequests} requests over ${opts.workloadDistinct} distinct ones…`);
    const model = kind === "embeddings" ? "sim-embed" : "sim-llama-8b";
    const before = await engineRequests(node.simUrl, model);
    let hits = 0;
    for (let i = 0; i < opts.workloadRequests; i++) {
      const [path, body] = requests[kind](10_000 + Math.floor(next() * opts.workloadDistinct));
      const res = await call(path, body);
      if (res.cache === "hit") hits++;
    }
    const gpuRequests = (await engineRequests(node.simUrl, model)) - before;
    workload.push({ kind, requests: opts.workloadRequests, distinct: opts.workloadDistinct, hits, gpuRequests, avoided: opts.workloadRequests - gpuRequests });
  }
  return { simArgs: CACHE_SIM_ARGS, latency, workload, errors };
}

const f = (v: number | null, digits = 1) => (v === null ? "-" : v.toFixed(digits));

/** The report's section. */
export function formatCache(r: CacheBenchResult): string {
  const out: string[] = ["## Response and embeddings caches (full path, concurrency 1)", ""];
  out.push(`Engine timed like a real model (\`${r.simArgs.join(" ")}\`): 20 ms per embeddings batch, 300 ms per chat answer. A miss is answered by the GPU and stored; a hit is the same request again, answered from Redis with no GPU.`, "");
  out.push("| request | rounds | miss p50 ms | miss p99 | hit p50 ms | hit p99 | miss / hit (p50) |", "|---|---|---|---|---|---|---|");
  for (const l of r.latency) out.push(`| ${l.kind} | ${l.rounds} | ${f(l.missP50)} | ${f(l.missP99)} | ${f(l.hitP50)} | ${f(l.hitP99)} | ${f(l.speedup)}× |`);
  out.push("", "| workload | requests | distinct | hits | GPU requests | GPU requests avoided |", "|---|---|---|---|---|---|");
  for (const w of r.workload) out.push(`| ${w.kind} | ${w.requests} | ${w.distinct} | ${w.hits} | ${w.gpuRequests} | ${w.avoided} (${f((100 * w.avoided) / Math.max(1, w.requests), 0)} %) |`);
  if (r.errors.length > 0) out.push("", ...r.errors.map((e) => `- error: ${e}`));
  return out.join("\n");
}
