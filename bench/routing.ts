/**
 * The routing benchmark: four simulated engines of unequal speed and queue behind their backplanes,
 * the same workload sent through the worker (plain workerd) with the environment's strategy set to
 * round-robin, least-load or prefix-affinity, and the time to first token the client sees.
 */
import { Redis } from "ioredis";
import { openDb } from "../dev/db.ts";
import { LocalNode } from "../dev/nodes.ts";
import { startEdge, waitForNodes, type Edge } from "./lib/edge.ts";
import { LoadClient } from "./load-client.ts";
import type { LoadResult } from "./load.ts";
import { percentile } from "./stats.ts";
import type { Teardown } from "./teardown.ts";

export interface RoutingOptions {
  pgAdminUrl: string;
  redisUrl: string;
  host: string;
  /** Requests per strategy and workload. */
  requests: number;
  concurrency: number;
  teardown: Teardown;
  log: (line: string) => void;
  signal: AbortSignal;
}

/** Client-side time to first token and what the engines' prefix caches saw. */
export interface RoutingRow {
  strategy: string;
  requests: number;
  errors: number;
  ttftP50Ms: number;
  ttftP90Ms: number;
  /** Share of prompt tokens served from the engines' prefix caches during the run (prefix workload only). */
  prefixHitRate: number | null;
}

export interface RoutingResult {
  nodes: { id: string; engine: string }[];
  unequal: RoutingRow[];
  prefixes: RoutingRow[];
}

const MODEL = "sim-llama-8b";
// Two fast engines and two slow ones that run two sequences at a time and queue the rest.
const NODES = [
  { id: "fast-1", sim: ["--ttft-ms", "10", "--inter-token-ms", "2", "--max-concurrency", "16"], engine: "10 ms TTFT, 2 ms/token, 16 at once" },
  { id: "fast-2", sim: ["--ttft-ms", "10", "--inter-token-ms", "2", "--max-concurrency", "16"], engine: "10 ms TTFT, 2 ms/token, 16 at once" },
  { id: "slow-1", sim: ["--ttft-ms", "10", "--inter-token-ms", "15", "--max-concurrency", "2"], engine: "10 ms TTFT, 15 ms/token, 2 at once" },
  { id: "slow-2", sim: ["--ttft-ms", "10", "--inter-token-ms", "15", "--max-concurrency", "2"], engine: "10 ms TTFT, 15 ms/token, 2 at once" },
];
// Every engine pays 0.05 ms of prefill per prompt token its prefix cache does not hold.
const PREFILL = ["--prefill-ms-per-token", "0.05"];

async function adminPost<T>(edge: Edge, path: string, body: unknown): Promise<T> {
  const res = await fetch(`${edge.url}/admin${path}`, { method: "POST", headers: { authorization: `Bearer ${edge.adminToken}`, "content-type": "application/json" }, body: JSON.stringify(body) });
  const json = (await res.json()) as T;
  if (!res.ok) throw new Error(`POST /admin${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/** A key whose environment routes with `strategy`. */
async function keyFor(edge: Edge, strategy: string): Promise<string> {
  const env = await adminPost<{ id: string }>(edge, "/environments", { tenant_id: edge.tenantId, name: `bench-${strategy}`, routing_strategy: strategy });
  return (await adminPost<{ key: string }>(edge, "/keys", { environment_id: env.id, name: strategy })).key;
}

async function prefixCounters(nodes: LocalNode[]): Promise<{ queries: number; hits: number }> {
  let queries = 0;
  let hits = 0;
  for (const node of nodes) {
    const text = await (await fetch(`${node.simUrl}/metrics`)).text();
    const sum = (name: string) =>
      text
        .split("\n")
        .filter((l) => l.startsWith(`${name}{`))
        .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
    queries += sum("vllm:prefix_cache_queries_total");
    hits += sum("vllm:prefix_cache_hits_total");
  }
  return { queries, hits };
}

function row(strategy: string, result: LoadResult, prefix: { queries: number; hits: number } | null): RoutingRow {
  const ttfts = [...result.ttftsMs].sort((a, b) => a - b);
  return {
    strategy,
    requests: result.sent,
    errors: Object.values(result.errors).reduce((a, b) => a + b, 0),
    ttftP50Ms: percentile(ttfts, 50) ?? NaN,
    ttftP90Ms: percentile(ttfts, 90) ?? NaN,
    prefixHitRate: prefix && prefix.queries > 0 ? prefix.hits / prefix.queries : null,
  };
}

/**
 * A long, distinct system prompt per prefix (about 600 tokens), each used `usesEach` times, in a
 * shuffled order (seeded, so every run and strategy sees the same sequence). In a fixed order, a
 * prefix's uses would land on the same node under round-robin by accident of the arithmetic.
 */
function prefixBodies(distinct: number, usesEach: number): string[] {
  const bodies: string[] = [];
  for (let u = 0; u < usesEach; u++) {
    for (let p = 0; p < distinct; p++) {
      const system = `You are assistant ${p}. ${`Rule ${p}: answer briefly and precisely. `.repeat(60)}`;
      bodies.push(JSON.stringify({ model: MODEL, stream: true, max_tokens: 8, messages: [{ role: "system", content: system }, { role: "user", content: `Question ${u}` }] }));
    }
  }
  let seed = 0x2545f491;
  const random = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 2 ** 32;
  };
  for (let i = bodies.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [bodies[i], bodies[j]] = [bodies[j] as string, bodies[i] as string];
  }
  return bodies;
}

export async function runRouting(opts: RoutingOptions): Promise<RoutingResult> {
  const { teardown, log, host } = opts;
  log("Routing benchmark: starting an edge and four engines of unequal speed…");
  const edge = await startEdge({ pgAdminUrl: opts.pgAdminUrl, redisUrl: opts.redisUrl, host });
  teardown.add("routing edge", () => edge.close());
  const db = openDb(edge.databaseUrl);
  teardown.add("routing database client", () => db.close());
  const redis = new Redis(opts.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  teardown.add("routing redis client", () => Promise.resolve(redis.disconnect()));
  const nodes = NODES.map(
    (n) =>
      new LocalNode(
        { id: n.id, region: edge.regionId, simArgs: [...n.sim, ...PREFILL], backplaneEnv: { BACKPLANE_HEARTBEAT_INTERVAL_MS: "500", BACKPLANE_LOAD_INTERVAL_MS: "250" }, simName: n.id, backplaneName: `${n.id}-bp` },
        { root: process.cwd(), host, gatewayUrl: edge.url, masterSecret: edge.nodeSigningSecret, echo: false, db, redis, redisPrefix: edge.redisPrefix },
      ),
  );
  for (const node of nodes) teardown.add(`node ${node.id}`, () => node.close());
  await Promise.all(nodes.map((n) => n.start()));
  await waitForNodes(edge, nodes.map((n) => n.id));
  const keys = { "round-robin": await keyFor(edge, "round-robin"), "least-load": await keyFor(edge, "least-load"), "prefix-affinity": await keyFor(edge, "prefix-affinity") };

  const client = new LoadClient();
  teardown.add("routing load client", () => client.close());
  const url = `${edge.url}/v1/chat/completions`;
  const run = (strategy: keyof typeof keys, spec: { body: string; bodies?: string[]; requests: number }) =>
    client.run(
      { url, headers: { authorization: `Bearer ${keys[strategy]}` }, stream: true, concurrency: opts.concurrency, requestTimeoutMs: 30_000, deadlineMs: 120_000, ...spec },
      opts.signal,
    );

  const unequalBody = JSON.stringify({ model: MODEL, stream: true, max_tokens: 32, ignore_eos: true, messages: [{ role: "user", content: "Tell me about rail yards." }] });
  const unequal: RoutingRow[] = [];
  for (const strategy of ["round-robin", "least-load"] as const) {
    log(`Routing: ${strategy} on the unequal engines (${opts.requests} streamed requests, ${opts.concurrency} in flight)…`);
    await run(strategy, { body: unequalBody, requests: Math.min(20, opts.requests) }); // warm-up
    await new Promise((r) => setTimeout(r, 1_500)); // queues drain, heartbeats settle
    unequal.push(row(strategy, await run(strategy, { body: unequalBody, requests: opts.requests }), null));
  }

  // Shared prefixes: each of many long system prompts comes back several times.
  const distinct = Math.max(8, Math.floor(opts.requests / 4));
  const prefixes: RoutingRow[] = [];
  for (const [i, strategy] of (["round-robin", "prefix-affinity"] as const).entries()) {
    log(`Routing: ${strategy} on ${distinct} shared prompt prefixes, 4 uses each…`);
    // Different prompts per strategy, so neither run finds the other's prefixes cached.
    const bodies = prefixBodies(distinct, 4).map((b) => b.replaceAll("You are assistant", `Run ${i}: you are assistant`));
    const before = await prefixCounters(nodes);
    const result = await run(strategy, { body: bodies[0] ?? "", bodies, requests: bodies.length });
    const after = await prefixCounters(nodes);
    prefixes.push(row(strategy, result, { queries: after.queries - before.queries, hits: after.hits - before.hits }));
  }
  return { nodes: NODES.map((n) => ({ id: n.id, engine: n.engine })), unequal, prefixes };
}
