/**
 * The mixed-priority benchmark (docs/edge-queue.md): simulated engines behind their
 * backplanes, an idle run of interactive requests for the baseline, then an open-loop run at 150 %
 * of the fleet's capacity mixing interactive and batch requests from three tenants of unequal
 * demand. Reports interactive p90 time to first token against the idle one, batch's p90 (which
 * absorbs the queueing), and each tenant's share of completed requests against its max-min fair share.
 * `npx node bench/priority.ts [--quick]` runs this section alone.
 */
import { Redis } from "ioredis";
import { openDb } from "../dev/db.ts";
import { LocalNode } from "../dev/nodes.ts";
import { startEdge, waitForNodes, type Edge } from "./lib/edge.ts";
import { percentile } from "./stats.ts";
import { Teardown } from "./teardown.ts";
import type { SectionOptions } from "./lib/section.ts";
import type { TargetCheck } from "./report.ts";

/** The section's options: the run's databases, host, mode, teardown and log. */
export type PriorityBenchOptions = SectionOptions;

/** One tenant's outcome in the loaded run. */
export interface TenantShare {
  tenant: string;
  /** Share of the requests sent. */
  offered: number;
  /** Requests completed while the load lasted (until the last arrival). */
  completed: number;
  /** Share of all completed requests, and the max-min fair share of them given every tenant's demand. */
  share: number;
  fairShare: number;
}

export interface PriorityBenchResult {
  engine: string;
  nodes: number;
  /** Requests the fleet runs at once (the in-flight target in all), and the measured service time. */
  slots: number;
  serviceMs: number;
  /** Offered rate of the loaded run (requests per second) and its multiple of capacity. */
  offeredRps: number;
  /** Requests completed per second while the load lasted (what the fleet served), and the capacity measured idle. */
  servedRps: number;
  capacityRps: number;
  load: number;
  durationSec: number;
  /** Which layers ordered the requests. */
  layers: string;
  idle: { requests: number; ttftP50Ms: number | null; ttftP90Ms: number | null };
  classes: { class: string; sent: number; completed: number; refused: number; errors: number; ttftP50Ms: number | null; ttftP90Ms: number | null }[];
  tenants: TenantShare[];
  errors: string[];
}

const MODEL = "sim-llama-8b";
const SLOTS_PER_NODE = 4;
/** In flight per node before the edge queue holds requests back: the engine's slots (none wait inside the engine, where a slot freed would go to whoever waits there first). */
const INFLIGHT_TARGET = SLOTS_PER_NODE;
/**
 * Share of a node's target kept free for better classes (QUEUE_CLASS_HEADROOM_PERCENT): batch runs at
 * most 2 of the 4 slots, so an interactive request nearly always finds one free (engines do not preempt).
 */
const HEADROOM_PERCENT = 25;
const SIM = ["--ttft-ms", "40", "--inter-token-ms", "8", "--max-concurrency", String(SLOTS_PER_NODE), "--scheduling-policy", "priority"];
const ENGINE = `40 ms TTFT, 8 ms/token, ${SLOTS_PER_NODE} at once, priority scheduling`;
const BODY = (stream: boolean) => JSON.stringify({ model: MODEL, stream, max_tokens: 16, ignore_eos: true, messages: [{ role: "user", content: "Tell me about rail yards." }] });
/** The loaded run's demand: tenant a sends half of each class, b and c a quarter each; a quarter of all requests are interactive. */
const TENANTS = [
  { name: "a", weight: 0.5 },
  { name: "b", weight: 0.25 },
  { name: "c", weight: 0.25 },
];
const INTERACTIVE_SHARE = 0.25;

async function adminPost<T>(edge: Edge, path: string, body: unknown): Promise<T> {
  const res = await fetch(`${edge.url}/admin${path}`, { method: "POST", headers: { authorization: `Bearer ${edge.adminToken}`, "content-type": "application/json" }, body: JSON.stringify(body) });
  const json = (await res.json()) as T;
  if (!res.ok) throw new Error(`POST /admin${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

interface Outcome {
  status: number;
  ttftMs: number | null;
  error: string | null;
  /** The error code of a refusal. */
  code?: string;
}

/** One streamed request: the time to its first token (a queued stream waits before its headers). */
async function streamed(url: string, key: string, started: number): Promise<Outcome> {
  try {
    const res = await fetch(url, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: BODY(true), signal: AbortSignal.timeout(60_000) });
    if (res.status !== 200) {
      const code = ((await res.json().catch(() => null)) as { error?: { code?: string } } | null)?.error?.code ?? "unknown";
      return { status: res.status, ttftMs: null, error: null, code };
    }
    if (!res.body) return { status: res.status, ttftMs: null, error: null };
    // The first token is the first `data:` event: keep-alive comments (STREAM_KEEPALIVE_MS) are not tokens.
    let ttft: number | null = null;
    const decoder = new TextDecoder();
    for await (const chunk of res.body) if (ttft === null && decoder.decode(chunk as Uint8Array, { stream: true }).includes("data:")) ttft = performance.now() - started;
    return { status: res.status, ttftMs: res.status === 200 ? ttft : null, error: null };
  } catch (err) {
    return { status: 0, ttftMs: null, error: err instanceof Error ? err.message : String(err) };
  }
}

/** Max-min fair shares of `capacity` among demands (water filling), as fractions of what is served. */
export function maxMinShares(demands: number[], capacity: number): number[] {
  const alloc = demands.map(() => 0);
  let left = capacity;
  let open = demands.map((_, i) => i);
  while (left > 1e-9 && open.length > 0) {
    const each = left / open.length;
    const satisfied = open.filter((i) => (demands[i] ?? 0) - (alloc[i] ?? 0) <= each);
    if (satisfied.length === 0) {
      for (const i of open) alloc[i] = (alloc[i] ?? 0) + each;
      break;
    }
    for (const i of satisfied) {
      left -= (demands[i] ?? 0) - (alloc[i] ?? 0);
      alloc[i] = demands[i] ?? 0;
    }
    open = open.filter((i) => !satisfied.includes(i));
  }
  const served = alloc.reduce((a, b) => a + b, 0);
  return alloc.map((a) => (served > 0 ? a / served : 0));
}

const pct = (values: number[], p: number) => percentile([...values].sort((a, b) => a - b), p);

export async function runPriorityBench(opts: PriorityBenchOptions): Promise<PriorityBenchResult> {
  const { teardown, log, host } = opts;
  const nodeCount = opts.quick ? 1 : 2;
  const durationSec = opts.quick ? 5 : 30;
  log(`Priority benchmark: an edge and ${nodeCount} simulated engine(s), ${SLOTS_PER_NODE} requests at once each…`);
  const edge = await startEdge({ pgAdminUrl: opts.pgAdminUrl, redisUrl: opts.redisUrl, host, vars: { EDGE_QUEUE_MAX_WAIT_MS: "20000", EDGE_QUEUE_MAX_WAITING: "1000", EDGE_QUEUE_RECHECK_MS: "1000", QUEUE_INFLIGHT_TARGET: String(INFLIGHT_TARGET), QUEUE_CLASS_HEADROOM_PERCENT: String(HEADROOM_PERCENT) } });
  teardown.add("priority edge", () => edge.close());
  const db = openDb(edge.databaseUrl);
  teardown.add("priority database client", () => db.close());
  const redis = new Redis(opts.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  teardown.add("priority redis client", () => Promise.resolve(redis.disconnect()));
  const nodes: LocalNode[] = [];
  for (let i = 1; i <= nodeCount; i++) {
    const backplaneEnv: Record<string, string> = { BACKPLANE_HEARTBEAT_INTERVAL_MS: "500", BACKPLANE_LOAD_INTERVAL_MS: "250" };
    const node = new LocalNode(
      { id: `prio-${i}`, region: edge.regionId, simArgs: SIM, backplaneEnv, simName: `prio-${i}`, backplaneName: `prio-${i}-bp` },
      { root: process.cwd(), host, gatewayUrl: edge.url, masterSecret: edge.nodeSigningSecret, echo: false, db, redis, redisPrefix: edge.redisPrefix },
    );
    teardown.add(`node ${node.id}`, () => node.close());
    await node.startSim();
    // The backplane passes the target's worth on (the engine queues what it cannot run yet, by priority: priority=1 sends the gateway's rank).
    backplaneEnv.BACKPLANE_ENGINES = `kind=sim,id=sim-0,url=${node.simUrl},max-concurrency=${INFLIGHT_TARGET},priority=1`;
    await node.startBackplane();
    nodes.push(node);
  }
  await waitForNodes(edge, nodes.map((n) => n.id));

  const keys: Record<string, { interactive: string; batch: string }> = {};
  for (const t of TENANTS) {
    const tenant = await adminPost<{ id: string }>(edge, "/tenants", { name: `bench-priority-${t.name}` });
    const env = await adminPost<{ id: string }>(edge, "/environments", { tenant_id: tenant.id, name: "bench" });
    keys[t.name] = {
      interactive: (await adminPost<{ key: string }>(edge, "/keys", { environment_id: env.id, name: "interactive", priority_class: "interactive" })).key,
      batch: (await adminPost<{ key: string }>(edge, "/keys", { environment_id: env.id, name: "batch", priority_class: "batch" })).key,
    };
  }
  const url = `${edge.url}/v1/chat/completions`;
  const firstKeys = keys.a ?? { interactive: edge.apiKey, batch: edge.apiKey };

  // Idle: one interactive request at a time (its time to first token, and the service time).
  const idleRequests = opts.quick ? 15 : 40;
  const idleTtfts: number[] = [];
  const serviceTimes: number[] = [];
  for (let i = 0; i < idleRequests + 3; i++) {
    const started = performance.now();
    const out = await streamed(url, firstKeys.interactive, started);
    if (i >= 3 && out.ttftMs !== null) {
      idleTtfts.push(out.ttftMs);
      serviceTimes.push(performance.now() - started);
    }
  }
  const serviceMs = pct(serviceTimes, 50) ?? 200;
  const slots = nodeCount * SLOTS_PER_NODE;
  const capacityRps = slots / (serviceMs / 1000);
  const offeredRps = capacityRps * 1.5;
  log(`Priority: idle p90 TTFT ${pct(idleTtfts, 90)?.toFixed(0)} ms, service ${serviceMs.toFixed(0)} ms, capacity ≈ ${capacityRps.toFixed(1)} req/s; loading at ${offeredRps.toFixed(1)} req/s for ${durationSec} s…`);

  // Loaded: open loop, a deterministic interleaving of classes and tenants.
  const total = Math.round(offeredRps * durationSec);
  const runs: Promise<{ cls: string; tenant: string; out: Outcome; doneAt: number }>[] = [];
  const start = performance.now();
  let seed = 0x9e3779b9;
  const random = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 2 ** 32;
  };
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / offeredRps;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const cls = random() < INTERACTIVE_SHARE ? "interactive" : "batch";
    const r = random();
    const tenant = r < 0.5 ? "a" : r < 0.75 ? "b" : "c";
    const key = keys[tenant]?.[cls] ?? edge.apiKey;
    const started = performance.now();
    runs.push(streamed(url, key, started).then((out) => ({ cls, tenant, out, doneAt: performance.now() })));
  }
  // Arrivals end here: the requests that completed until now were chosen among competing ones.
  const loadEnd = performance.now();
  const results = await Promise.all(runs);
  const codes = new Map<string, number>();
  for (const r of results) if (r.out.code) codes.set(`${r.cls} ${r.out.status} ${r.out.code}`, (codes.get(`${r.cls} ${r.out.status} ${r.out.code}`) ?? 0) + 1);
  if (codes.size > 0) log(`Priority: refusals ${[...codes].map(([k, n]) => `${k} × ${n}`).join(", ")}`);

  const classes = ["interactive", "batch"].map((cls) => {
    const mine = results.filter((r) => r.cls === cls);
    const ttfts = mine.filter((r) => r.out.status === 200 && r.out.ttftMs !== null).map((r) => r.out.ttftMs ?? 0);
    return {
      class: cls,
      sent: mine.length,
      completed: ttfts.length,
      refused: mine.filter((r) => r.out.status === 429 || r.out.status === 503).length,
      errors: mine.filter((r) => r.out.status !== 200 && r.out.status !== 429 && r.out.status !== 503).length,
      ttftP50Ms: pct(ttfts, 50),
      ttftP90Ms: pct(ttfts, 90),
    };
  });
  // Shares are of the requests completed while the load lasted: afterwards the queue drains and
  // every tenant's backlog completes, whatever the order was.
  const inWindow = (r: (typeof results)[number]) => r.out.status === 200 && r.doneAt <= loadEnd;
  const completedAll = results.filter(inWindow).length;
  const demands = TENANTS.map((t) => results.filter((r) => r.tenant === t.name).length);
  // Fairness is within a class (a class above is served first whoever sends it): each class's completed
  // requests are shared max-min among its tenants' demands, and a tenant's fair share sums its classes'.
  const fair = TENANTS.map(() => 0);
  for (const cls of ["interactive", "batch"]) {
    const mine = results.filter((r) => r.cls === cls);
    const done = mine.filter(inWindow).length;
    const shares = maxMinShares(TENANTS.map((t) => mine.filter((r) => r.tenant === t.name).length), done);
    shares.forEach((share, i) => (fair[i] = (fair[i] ?? 0) + (share * done) / Math.max(1, completedAll)));
  }
  const tenants = TENANTS.map((t, i) => {
    const completed = results.filter((r) => r.tenant === t.name && inWindow(r)).length;
    return { tenant: t.name, offered: (demands[i] ?? 0) / Math.max(1, results.length), completed, share: completed / Math.max(1, completedAll), fairShare: fair[i] ?? 0 };
  });
  const errors = results.filter((r) => r.out.error !== null).map((r) => `${r.cls}/${r.tenant}: ${r.out.error ?? ""}`);
  const unexpected = classes.reduce((n, c) => n + c.errors, 0);
  if (unexpected > errors.length) errors.push(`${unexpected - errors.length} requests answered with an unexpected status`);
  return {
    engine: ENGINE,
    nodes: nodeCount,
    slots,
    serviceMs,
    offeredRps,
    servedRps: completedAll / ((loadEnd - start) / 1000),
    capacityRps,
    load: 1.5,
    durationSec,
    layers: `the edge queue holds requests beyond ${INFLIGHT_TARGET} in flight per node, ${HEADROOM_PERCENT} % of it kept for better classes (batch counts a node full at ${Math.max(1, Math.floor(INFLIGHT_TARGET * (1 - (2 * HEADROOM_PERCENT) / 100)))}), and admits in class order, tenants in turn within a class; each engine runs ${SLOTS_PER_NODE} at once with vLLM's --scheduling-policy priority (the gateway's rank as the request's priority)`,
    idle: { requests: idleTtfts.length, ttftP50Ms: pct(idleTtfts, 50), ttftP90Ms: pct(idleTtfts, 90) },
    classes,
    tenants,
    errors: errors.slice(0, 10),
  };
}

/** The section's targets, measured values beside them (not asserted: the numbers depend on the machine). */
export function priorityTargets(r: PriorityBenchResult | null): TargetCheck[] {
  if (!r) return [];
  const interactive = r.classes.find((c) => c.class === "interactive");
  const batch = r.classes.find((c) => c.class === "batch");
  const idle = r.idle.ttftP90Ms;
  const ratio = interactive?.ttftP90Ms !== null && interactive?.ttftP90Ms !== undefined && idle ? interactive.ttftP90Ms / idle : null;
  const worst = r.tenants.reduce<TenantShare | null>((w, t) => (w === null || t.share / Math.max(1e-9, t.fairShare) < w.share / Math.max(1e-9, w.fairShare) ? t : w), null);
  const worstRatio = worst ? worst.share / Math.max(1e-9, worst.fairShare) : null;
  return [
    {
      goal: "Mixed priority at 150 % of capacity: interactive p90 TTFT within 2× of idle",
      measured: ratio === null ? "not measured" : `${interactive?.ttftP90Ms?.toFixed(0)} ms vs ${idle?.toFixed(0)} ms idle (${ratio.toFixed(2)}×); batch p90 ${batch?.ttftP90Ms?.toFixed(0) ?? "-"} ms, ${batch?.refused ?? 0} of ${batch?.sent ?? 0} refused`,
      met: ratio === null ? null : ratio <= 2,
    },
    {
      goal: "Mixed priority: no tenant's share of completed requests more than 10 % below its fair share",
      measured: worst && worstRatio !== null ? `lowest: tenant ${worst.tenant} ${(worst.share * 100).toFixed(1)} % vs fair ${(worst.fairShare * 100).toFixed(1)} % (${((worstRatio - 1) * 100).toFixed(1)} %)` : "not measured",
      met: worstRatio === null ? null : worstRatio >= 0.9,
    },
  ];
}

/** The section of the Markdown report. */
export function formatPriority(r: PriorityBenchResult): string {
  const f = (v: number | null) => (v === null ? "-" : v.toFixed(0));
  const lines = [
    "## Mixed priority at 150 % of capacity",
    "",
    `${r.nodes} node(s) of ${r.engine} (${r.slots} slots; service ${r.serviceMs.toFixed(0)} ms), ${r.offeredRps.toFixed(1)} streamed requests per second for ${r.durationSec} s (${r.load * 100} % of capacity), a quarter interactive, three tenants sending 50/25/25 %. Ordering: ${r.layers}.`,
    "",
    `Idle interactive TTFT: p50 ${f(r.idle.ttftP50Ms)} ms, p90 ${f(r.idle.ttftP90Ms)} ms (${r.idle.requests} requests one at a time).`,
    "",
    `Served under load: ${r.servedRps.toFixed(1)} requests per second, ${((r.servedRps / Math.max(1e-9, r.capacityRps)) * 100).toFixed(0)} % of the ${r.capacityRps.toFixed(1)} the slots serve back to back (the headroom kept for better classes and each slot's hand-off through the edge queue are the difference).`,
    "",
    "| class | sent | completed | refused (429/503) | other errors | TTFT p50 ms | TTFT p90 ms |",
    "|---|---|---|---|---|---|---|",
    ...r.classes.map((c) => `| ${c.class} | ${c.sent} | ${c.completed} | ${c.refused} | ${c.errors} | ${f(c.ttftP50Ms)} | ${f(c.ttftP90Ms)} |`),
    "",
    "| tenant | share offered | completed under load | share of those | fair share (max-min within each class) |",
    "|---|---|---|---|---|",
    ...r.tenants.map((t) => `| ${t.tenant} | ${(t.offered * 100).toFixed(1)} % | ${t.completed} | ${(t.share * 100).toFixed(1)} % | ${(t.fairShare * 100).toFixed(1)} % |`),
  ];
  if (r.errors.length > 0) lines.push("", `Errors: ${r.errors.join("; ")}`);
  return lines.join("\n");
}

// `npx node bench/priority.ts [--quick]`: this section alone.
if (import.meta.main) {
  const teardown = new Teardown();
  try {
    const result = await runPriorityBench({
      pgAdminUrl: process.env.PG_ADMIN_URL || "postgres://postgres@127.0.0.1:5432/postgres",
      redisUrl: process.env.REDIS_URL || "redis://127.0.0.1:6379",
      host: "127.0.0.1",
      quick: process.argv.includes("--quick"),
      teardown,
      log: (line) => console.error(line),
    });
    console.log(formatPriority(result));
    for (const t of priorityTargets(result)) console.log(`- ${t.goal}: ${t.measured} (${t.met === null ? "-" : t.met ? "met" : "NOT met"})`);
  } finally {
    await teardown.close();
  }
}
