/**
 * `npx node bench/profile-worker.ts [--seconds 10] [--stream [--usage]] [--connections 16]`: a CPU profile of the
 * worker on plain workerd under wrk load (full path: edge → backplane → simulated engine), summarised
 * as self time per function, heaviest first. The raw profile (open it in Chrome DevTools) is written
 * to bench/results/worker.cpuprofile. Needs wrk, Postgres and Redis, like `npm run bench`.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import { startEdge, waitForNodes } from "./lib/edge.ts";
import { ROOT } from "./lib/workerd.ts";
import { runWrk, wrkAvailable } from "./lib/wrk.ts";
import { openDb } from "../dev/db.ts";
import { freePort } from "../dev/ports.ts";
import { LocalNode } from "../dev/nodes.ts";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "10" },
    stream: { type: "boolean", default: false },
    // Streams: ask for the usage chunk (stream_options.include_usage), so the tap passes every chunk as it is.
    usage: { type: "boolean", default: false },
    connections: { type: "string", default: "16" },
  },
});
if (!wrkAvailable()) {
  console.error("wrk is not installed (Debian: apt-get install wrk).");
  process.exit(2);
}
const inspectorPort = await freePort();
process.env.BENCH_WORKERD_INSPECTOR = `127.0.0.1:${inspectorPort}`;
const pgAdminUrl = process.env.PG_ADMIN_URL || "postgres://postgres@127.0.0.1:5432/postgres";
const redisUrl = process.env.REDIS_URL || "redis://127.0.0.1:6379";
const suffix = Math.random().toString(16).slice(2, 10);
const redisPrefix = `sy:bench:${suffix}:`;
const edge = await startEdge({ pgAdminUrl, redisUrl, redisPrefix, databaseName: `sy_bench_${suffix}` });
const db = openDb(edge.databaseUrl);
const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
redis.on("error", () => {});
const node = new LocalNode(
  { id: "profile-1", region: edge.regionId, simArgs: ["--ttft-ms", "0", "--inter-token-ms", "0", "--max-concurrency", "256"], backplaneEnv: {}, simName: "sim", backplaneName: "backplane" },
  { root: ROOT, host: "127.0.0.1", gatewayUrl: edge.url, masterSecret: edge.nodeSigningSecret, echo: false, db, redis, redisPrefix },
);
try {
  await node.startSim();
  await node.startBackplane();
  await waitForNodes(edge, [node.id]);
  const body = JSON.stringify({ model: "sim-llama-8b", messages: [{ role: "user", content: "Say something." }], max_tokens: 16, stream: values.stream, ...(values.stream && values.usage ? { stream_options: { include_usage: true } } : {}) });
  const load = (durationSec: number) =>
    runWrk({ url: `${edge.url}/v1/chat/completions`, method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${edge.apiKey}` }, body, connections: Number(values.connections), durationSec });
  await load(2);
  const targets = (await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json()) as { webSocketDebuggerUrl: string }[];
  const wsUrl = targets[0]?.webSocketDebuggerUrl;
  if (!wsUrl) throw new Error("workerd's inspector lists no target");
  const ws = new WebSocket(wsUrl);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  let nextId = 1;
  const pending = new Map<number, (result: unknown) => void>();
  ws.onmessage = (event) => {
    const msg = JSON.parse(String(event.data)) as { id?: number; result?: unknown };
    if (msg.id !== undefined) pending.get(msg.id)?.(msg.result);
  };
  const send = (method: string, params: Record<string, unknown> = {}) =>
    new Promise<unknown>((resolve) => {
      const id = nextId++;
      pending.set(id, resolve);
      ws.send(JSON.stringify({ id, method, params }));
    });
  await send("Profiler.enable");
  await send("Profiler.setSamplingInterval", { interval: 100 });
  await send("Profiler.start");
  const result = await load(Number(values.seconds));
  const { profile } = (await send("Profiler.stop")) as { profile: Profile };
  ws.close();
  await mkdir(join(import.meta.dirname, "results"), { recursive: true });
  await writeFile(join(import.meta.dirname, "results", "worker.cpuprofile"), JSON.stringify(profile));

  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const byFunction = new Map<string, number>();
  let total = 0;
  for (const n of profile.nodes) {
    const us = self.get(n.id) ?? 0;
    total += us;
    const file = n.callFrame.url.split("/").pop() ?? "";
    const name = `${n.callFrame.functionName || "(anonymous)"} ${file}:${n.callFrame.lineNumber + 1}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + us);
  }
  const idle = [...byFunction].filter(([k]) => k.startsWith("(idle)")).reduce((s, [, v]) => s + v, 0);
  const busy = total - idle;
  console.log(`${result.requests} requests in ${values.seconds} s (${result.rps.toFixed(0)}/s); sampled busy time ${(busy / 1000).toFixed(0)} ms = ${(busy / 1000 / result.requests).toFixed(3)} ms per request`);
  for (const [name, us] of [...byFunction].filter(([k]) => !k.startsWith("(idle)")).sort((a, b) => b[1] - a[1]).slice(0, 40)) {
    console.log(`${((100 * us) / busy).toFixed(1).padStart(5)} %  ${(us / result.requests).toFixed(1).padStart(6)} µs/req  ${name}`);
  }
} finally {
  await node.close();
  await db.close();
  redis.disconnect();
  await edge.close();
}
