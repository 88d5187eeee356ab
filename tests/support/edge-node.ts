/**
 * A gateway on plain workerd (bench/lib/edge.ts) with one backplane in front of one simulated engine
 * of `slots` concurrent requests (the node's capacity in its heartbeats, every 500 ms), and an
 * interactive key beside the demo key: the edge queue's end-to-end tests.
 */
import { Redis } from "ioredis";
import { startEdge, waitForNodes, type Edge } from "../../bench/lib/edge.ts";
import { ROOT } from "../../bench/lib/workerd.ts";
import { openDb, type NodeDb } from "../../dev/db.ts";
import { LocalNode } from "../../dev/nodes.ts";
import { PG_ADMIN_URL, REDIS_URL, uniqueSuffix } from "./fixtures.ts";

export interface EdgeWithNode {
  edge: Edge;
  node: LocalNode;
  db: NodeDb;
  /** A key of the demo environment with priority class interactive. */
  interactiveKey: string;
  close(): Promise<void>;
}

export async function startEdgeWithNode(name: string, opts: { vars: Record<string, string>; slots: number }): Promise<EdgeWithNode> {
  const suffix = uniqueSuffix();
  const redisPrefix = `sy:e2e-${name}:${suffix}:`;
  const edge = await startEdge({ pgAdminUrl: PG_ADMIN_URL, redisUrl: REDIS_URL, redisPrefix, databaseName: `sy_e2e_${name}_${suffix}`, vars: opts.vars });
  const db = openDb(edge.databaseUrl);
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  redis.on("error", () => {});
  const backplaneEnv: Record<string, string> = { BACKPLANE_HEARTBEAT_INTERVAL_MS: "500" };
  const node = new LocalNode(
    { id: `${name}-1`, region: edge.regionId, simArgs: ["--max-concurrency", String(opts.slots), "--inter-token-ms", "20"], backplaneEnv, simName: "sim", backplaneName: "backplane" },
    { root: ROOT, host: "127.0.0.1", gatewayUrl: edge.url, masterSecret: edge.nodeSigningSecret, echo: false, db, redis, redisPrefix },
  );
  const close = async () => {
    await node.close();
    await db.close();
    redis.disconnect();
    await edge.close();
  };
  try {
    await node.startSim();
    // As many at once on the backplane too: the node's capacity in its heartbeats.
    backplaneEnv.BACKPLANE_ENGINES = `kind=sim,id=sim-0,url=${node.simUrl},max-concurrency=${opts.slots}`;
    await node.startBackplane();
    await waitForNodes(edge, [node.id]);
    const res = await fetch(`${edge.url}/admin/keys`, {
      method: "POST",
      headers: { authorization: `Bearer ${edge.adminToken}`, "content-type": "application/json" },
      body: JSON.stringify({ environment_id: edge.environmentId, name: "interactive", priority_class: "interactive" }),
    });
    if (res.status !== 201) throw new Error(`POST /admin/keys: ${res.status} ${await res.text()}`);
    const interactiveKey = ((await res.json()) as { key: string }).key;
    return { edge, node, db, interactiveKey, close };
  } catch (err) {
    await close();
    throw err;
  }
}
