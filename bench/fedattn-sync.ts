/**
 * Federated-attention syncs through the real coordinator (docs/fedattn.md): the gateway bundle on
 * plain workerd with its Durable Objects (bench/lib/edge.ts; FedattnSession and FedattnIndex in
 * memory), Redis and Postgres next door. Per case, N nodes that never registered (they sign with
 * secret version 1, as a new node does) start and join one session; then every sync, each sends
 * its contribution at once (`POST .../contribute`, signed over the raw bytes) and, once all are
 * answered, the initiator asks for the aggregate (`POST .../aggregate`, no wait) and reads it to the
 * last byte (then, off the clock, the others fetch their copy, which must be the same). Timed: the whole sync as a participant sees it (first contribution sent to the
 * aggregate's last byte), the contributions (until the last is answered) and the aggregate call
 * alone, and the gateway's own figure for that call (`x-fedattn-sync-latency-ms`: from the route's
 * start to the session object's answer, what /admin/metrics records; whole ms, as Workers move the
 * clock only on I/O). Each
 * request is signed just before the sync's clock starts (hashing tens of MB is the node's work,
 * not the coordinator's). Every answer is checked: status, participants, weight, sampled values.
 */
import { decodeContribution } from "../schema/contracts/fedattn-tensors.ts";
import { contributionMessage, type FedattnCase } from "./fedattn-compute.ts";
import { startEdge, type Edge } from "./lib/edge.ts";
import { signedHeaders } from "./lib/signed.ts";
import { percentile } from "./stats.ts";
import type { Teardown } from "./teardown.ts";

/** Times of one case through the gateway, ms. */
export interface SyncRow extends FedattnCase {
  syncs: number;
  /** First contribution sent to the aggregate's last byte read. */
  syncP50: number | null;
  syncP90: number | null;
  /** Every contribution sent at once, until the last one is answered. */
  contributionsP50: number | null;
  /** The aggregate call alone (request sent to last byte read). */
  aggregateP50: number | null;
  aggregateP90: number | null;
  /** The gateway's `x-fedattn-sync-latency-ms` for the aggregate call (null: the header is absent). */
  gatewayP50: number | null;
}

export interface FedattnSyncOptions {
  pgAdminUrl: string;
  redisUrl: string;
  host: string;
  cases: readonly FedattnCase[];
  /** Measured syncs per case (after `warmup` unmeasured ones). */
  syncs: number;
  warmup: number;
  teardown: Teardown;
  log: (line: string) => void;
}

/** Sends one signed call as `nodeId`; the answer's status must be 200. */
async function call(edge: Edge, nodeId: string, path: string, body: string | Uint8Array<ArrayBuffer>, signed?: Record<string, string>): Promise<Response> {
  const headers = signed ?? (await sign(edge, nodeId, path, body));
  const res = await fetch(`${edge.url}${path}`, { method: "POST", headers, body });
  if (res.status !== 200) throw new Error(`${path} as ${nodeId}: HTTP ${res.status} ${(await res.text()).slice(0, 300)}`);
  return res;
}

async function sign(edge: Edge, nodeId: string, path: string, body: string | Uint8Array<ArrayBuffer>): Promise<Record<string, string>> {
  const headers = await signedHeaders({ masterSecret: edge.nodeSigningSecret, nodeId, path, body });
  if (typeof body !== "string") headers["content-type"] = "application/octet-stream";
  return headers;
}

/** Checks the aggregate against the weighted average of what was sent, at a few sampled elements. */
function checkAggregate(answer: Uint8Array, messages: Uint8Array[], nodes: string[], participantsHeader: string | null): string | null {
  const out = decodeContribution(answer);
  const inputs = messages.map((m) => decodeContribution(m));
  const weights = inputs.map((c) => c.weight);
  const total = weights.reduce((a, b) => a + b, 0);
  if ([...(participantsHeader ?? "").split(",")].sort().join(",") !== [...nodes].sort().join(",")) return `x-fedattn-participants is "${participantsHeader}", expected ${nodes.join(",")}`;
  if (out.weight !== total) return `the aggregate's weight is ${out.weight}, expected ${total}`;
  for (const tensor of ["k", "v"] as const) {
    const got = out[tensor].data;
    if (!(got instanceof Float32Array) || got.length !== inputs[0]?.[tensor].data.length) return `the aggregate's ${tensor.toUpperCase()} is not float32 of the contributions' length`;
    for (let s = 0; s < 16; s++) {
      const i = Math.floor((s / 16) * got.length) + s;
      let want = 0;
      inputs.forEach((c, p) => (want += ((weights[p] ?? 0) / total) * (c[tensor].data[i] ?? 0)));
      if (Math.abs((got[i] ?? NaN) - want) > 1e-6) return `${tensor.toUpperCase()}[${i}] is ${got[i]}, expected ${want}`;
    }
  }
  return null;
}

/** One case: a fresh session of `participants` nodes, `warmup + syncs` syncs, then the session ended. */
async function runCase(edge: Edge, c: FedattnCase, opts: FedattnSyncOptions): Promise<SyncRow> {
  const run = Math.random().toString(16).slice(2, 8);
  const nodes = Array.from({ length: c.participants }, (_, i) => `fa-bench-${run}-${i + 1}`);
  const [initiator = ""] = nodes;
  const messages = nodes.map((_, i) => contributionMessage(i + 1, c.mb));
  const created = (await (await call(edge, initiator, "/v1/fedattn/sessions", JSON.stringify({ initiator_node: initiator }))).json()) as { session_id: string };
  const base = `/v1/fedattn/sessions/${created.session_id}`;
  for (const node of nodes.slice(1)) await (await call(edge, node, `${base}/join`, JSON.stringify({ participant_node: node }))).arrayBuffer();
  const sync: number[] = [];
  const agg: number[] = [];
  const contributions: number[] = [];
  const gateway: number[] = [];
  try {
    for (let s = 0; s < opts.warmup + opts.syncs; s++) {
      const signed = await Promise.all(nodes.map((node, i) => sign(edge, node, `${base}/contribute`, messages[i] ?? new Uint8Array())));
      const aggregateSigned = await sign(edge, initiator, `${base}/aggregate`, "");
      const started = performance.now();
      await Promise.all(nodes.map(async (node, i) => (await call(edge, node, `${base}/contribute`, messages[i] ?? new Uint8Array(), signed[i])).arrayBuffer()));
      const aggStarted = performance.now();
      const res = await call(edge, initiator, `${base}/aggregate`, "", aggregateSigned);
      const answer = new Uint8Array(await res.arrayBuffer());
      const ended = performance.now();
      const wrong = checkAggregate(answer, messages, nodes, res.headers.get("x-fedattn-participants"));
      if (wrong !== null) throw new Error(`${c.participants} × ${c.mb} MB, sync ${s}: ${wrong}`);
      // Off the clock, the others take their copy, as every participant of a sync does (the session
      // keeps an aggregate until each of them has it); each must be the initiator's.
      for (const node of nodes.slice(1)) {
        const copy = new Uint8Array(await (await call(edge, node, `${base}/aggregate`, "")).arrayBuffer());
        if (Buffer.compare(copy, answer) !== 0) throw new Error(`${c.participants} × ${c.mb} MB, sync ${s}: ${node}'s aggregate differs from ${initiator}'s`);
      }
      if (s < opts.warmup) continue;
      sync.push(ended - started);
      agg.push(ended - aggStarted);
      contributions.push(aggStarted - started);
      const header = res.headers.get("x-fedattn-sync-latency-ms");
      if (header !== null && Number.isFinite(Number(header))) gateway.push(Number(header));
    }
  } finally {
    // Best effort: the edge and its objects go when the section ends anyway.
    await call(edge, initiator, `${base}/end`, "{}")
      .then((r) => r.arrayBuffer())
      .catch(() => undefined);
  }
  const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
  const [s, a, k, g] = [sorted(sync), sorted(agg), sorted(contributions), sorted(gateway)];
  return { ...c, syncs: sync.length, syncP50: percentile(s, 50), syncP90: percentile(s, 90), contributionsP50: percentile(k, 50), aggregateP50: percentile(a, 50), aggregateP90: percentile(a, 90), gatewayP50: percentile(g, 50) };
}

/** Starts an edge and runs every case on it; a failing case is reported in `errors` and the others still run. */
export async function runFedattnSync(opts: FedattnSyncOptions): Promise<{ rows: SyncRow[]; errors: string[] }> {
  opts.log("Federated attention: an edge (worker on plain workerd with its Durable Objects in memory)…");
  // wrangler.toml caps a session's pending contributions for Cloudflare's 128 MB Durable Object
  // isolate; 8 × 32 MB is above that cap, and plain workerd has no such limit (the worker's own
  // default when the var is unset).
  const edge = await startEdge({ pgAdminUrl: opts.pgAdminUrl, redisUrl: opts.redisUrl, host: opts.host, vars: { FEDATTN_MAX_PENDING_MB: "512" } });
  opts.teardown.add("fedattn edge", () => edge.close());
  const rows: SyncRow[] = [];
  const errors: string[] = [];
  for (const c of opts.cases) {
    opts.log(`Federated attention: ${c.participants} participants × ${c.mb} MB, ${opts.warmup} + ${opts.syncs} syncs…`);
    try {
      rows.push(await runCase(edge, c, opts));
    } catch (err) {
      errors.push(`${c.participants} × ${c.mb} MB: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return { rows, errors };
}
