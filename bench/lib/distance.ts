/**
 * The distance rows of the comparison: the full path again on edges whose Upstash-REST adapter
 * answers every Redis write a round trip later, as Upstash Global's primary region does for a
 * worker far from it (dev/upstash-rest.ts, `writeRttMs`). Each such edge has its own database, Redis
 * prefix (so limits and leases of one never reach another) and backplane in front of the shared
 * engine. The gateway's `switchyard_admissions_total` counter tells how many requests waited on Redis.
 */
import { waitForHttp, freePort } from "../../dev/ports.ts";
import { startChild, type Child } from "../../dev/processes.ts";
import { startEdge, waitForNodes, type Edge } from "./edge.ts";
import { nodeSecret } from "./signed.ts";
import { ROOT } from "./worker-bundle.ts";

/** The comparison's name for the full path at a write RTT: `switchyard` at 0, `switchyard-rtt80` at 80 ms. */
export function distanceTarget(writeRttMs: number): string {
  return writeRttMs === 0 ? "switchyard" : `switchyard-rtt${writeRttMs}`;
}

/** A full-path edge at a distance from Redis, with its own backplane registered. */
export interface DistantEdge {
  writeRttMs: number;
  edge: Edge;
  nodeId: string;
  backplane: Child;
  /** Stops the backplane, then the edge. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * Starts an edge (reusing `like`'s bundle) whose Redis writes take `writeRttMs` longer, and a
 * backplane for it in front of `engineUrl`; resolves once the edge routes to that backplane.
 */
export async function startDistantEdge(opts: {
  like: Edge;
  pgAdminUrl: string;
  host: string;
  writeRttMs: number;
  engineUrl: string;
  /** Worker vars over the bench's (another configuration of the same full path), and a name for its node. */
  vars?: Record<string, string>;
  name?: string;
}): Promise<DistantEdge> {
  const edge = await startEdge({
    pgAdminUrl: opts.pgAdminUrl,
    redisUrl: opts.like.redisUrl,
    host: opts.host,
    regionId: opts.like.regionId,
    redisWriteRttMs: opts.writeRttMs,
    bundle: opts.like.bundle,
    config: opts.like.config,
    ...(opts.vars ? { vars: opts.vars } : {}),
  });
  const nodeId = `bench-${opts.name ?? `rtt${opts.writeRttMs}`}`;
  let backplane: Child | null = null;
  let closing: Promise<void> | null = null;
  const close = () =>
    (closing ??= (async () => {
      // Its last heartbeat must still reach the edge.
      await backplane?.stop();
      await edge.close();
    })());
  try {
    const port = await freePort(opts.host);
    const url = `http://${opts.host}:${port}`;
    const started = startChild(`backplane-${opts.name ?? `rtt${opts.writeRttMs}`}`, ["backplane/src/main.ts", "start"], {
      cwd: ROOT,
      echo: false,
      env: {
        BACKPLANE_NODE_ID: nodeId,
        BACKPLANE_REGION: edge.regionId,
        BACKPLANE_SECRET: await nodeSecret(edge.nodeSigningSecret, nodeId),
        BACKPLANE_HOST: opts.host,
        BACKPLANE_PORT: String(port),
        BACKPLANE_PUBLIC_URL: url,
        BACKPLANE_GATEWAY_URL: edge.url,
        BACKPLANE_ENGINES: `kind=sim,id=sim-0,url=${opts.engineUrl}`,
        BACKPLANE_HEARTBEAT_INTERVAL_MS: "1000",
        BACKPLANE_LOG_LEVEL: "warn",
      },
    });
    backplane = started;
    await waitForHttp(`${url}/health`, 15_000, () => started.alive());
    await waitForNodes(edge, [nodeId]);
    return { writeRttMs: opts.writeRttMs, edge, nodeId, backplane: started, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** Requests admitted from the isolate's leases (`local`) and after a Redis round trip they waited on (`redis`). */
export interface AdmissionCount {
  local: number;
  redis: number;
}

const SAMPLE = /^switchyard_admissions_total(?:\{([^}]*)\})?\s+(\S+)/;

/**
 * The admission totals in `GET /admin/metrics` text: every `switchyard_admissions_total` sample with
 * `path="local"` or `path="redis"`, whatever its other labels and their order; null when the gateway
 * does not count admissions (no such sample at all).
 */
export function parseAdmissions(text: string): AdmissionCount | null {
  let seen = false;
  const count: AdmissionCount = { local: 0, redis: 0 };
  for (const line of text.split("\n")) {
    const match = SAMPLE.exec(line.trim());
    if (!match) continue;
    seen = true;
    const path = /(?:^|,)\s*path\s*=\s*"([^"]*)"/.exec(match[1] ?? "")?.[1];
    const value = Number(match[2]);
    if ((path === "local" || path === "redis") && Number.isFinite(value)) count[path] += value;
  }
  return seen ? count : null;
}

/** The edge's admission totals now; null when they cannot be read or are not counted. */
export async function readAdmissions(edge: Pick<Edge, "url" | "adminToken">): Promise<AdmissionCount | null> {
  try {
    const res = await fetch(`${edge.url}/admin/metrics`, { headers: { authorization: `Bearer ${edge.adminToken}` }, signal: AbortSignal.timeout(10_000) });
    const text = await res.text();
    return res.ok ? parseAdmissions(text) : null;
  } catch {
    return null;
  }
}

/** What was counted between two readings; null when either is missing. */
export function admissionsBetween(before: AdmissionCount | null, after: AdmissionCount | null): AdmissionCount | null {
  if (before === null || after === null) return null;
  return { local: after.local - before.local, redis: after.redis - before.redis };
}

/** The sum of counts; null when any is missing. */
export function sumAdmissions(counts: (AdmissionCount | null)[]): AdmissionCount | null {
  let sum: AdmissionCount = { local: 0, redis: 0 };
  for (const c of counts) {
    if (c === null) return null;
    sum = { local: sum.local + c.local, redis: sum.redis + c.redis };
  }
  return sum;
}

/** The share of admitted requests that waited on Redis (0 to 1); null when nothing was counted. */
export function redisShare(count: AdmissionCount | null): number | null {
  if (count === null) return null;
  const total = count.local + count.redis;
  return total > 0 ? count.redis / total : null;
}
