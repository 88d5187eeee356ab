/**
 * `npm start`: the whole Switchyard stack on this machine. Settings come from the environment
 * (documented in docs/configuration.md); `--topology <file>` starts several nodes in several regions
 * (docs/topology.md), `--redis-write-rtt-ms` / `--redis-read-rtt-ms` put Redis at a distance.
 * Everything started here stops on Ctrl-C or SIGTERM.
 */
import { join, relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import { ROOT, startStack, type Stack } from "./stack.ts";
import { loadTopology, type Topology } from "./topology.ts";

const USAGE = `Usage: npm start [-- --topology <file>] [--redis-write-rtt-ms N] [--redis-read-rtt-ms N]

  --topology <file>         start the nodes and regions of a topology file instead of one local node,
                            e.g. dev/topologies/three-regions.json (format: docs/topology.md)
  --redis-write-rtt-ms N    add N ms to every Redis request that writes, as the round trip to
                            Upstash's primary region would (default 0; e.g. 80)
  --redis-read-rtt-ms N     add N ms to every read-only Redis request, as the round trip to the
                            nearest read replica would (default 0)
  -h, --help                show this text

Settings come from the environment: see docs/configuration.md.`;

function fail(message: string): never {
  console.error(`\nSwitchyard could not start: ${message}`);
  process.exit(1);
}

/** A round-trip flag: whole milliseconds from 0 to 10 000 (0 when not given). */
function rttFlag(name: string, raw: string | undefined): number {
  if (raw === undefined) return 0;
  const ms = Number(raw);
  if (!/^\d+$/.test(raw) || ms > 10_000) throw new Error(`--${name} must be a whole number of milliseconds from 0 to 10000, got "${raw}".`);
  return ms;
}

let flags: { topology?: string; "redis-write-rtt-ms"?: string; "redis-read-rtt-ms"?: string; help?: boolean };
let redisRtt: { write: number; read: number };
try {
  flags = parseArgs({
    options: {
      topology: { type: "string" },
      "redis-write-rtt-ms": { type: "string" },
      "redis-read-rtt-ms": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  }).values;
  redisRtt = {
    write: rttFlag("redis-write-rtt-ms", flags["redis-write-rtt-ms"]),
    read: rttFlag("redis-read-rtt-ms", flags["redis-read-rtt-ms"]),
  };
} catch (err) {
  console.error(`${err instanceof Error ? err.message : String(err)}\n\n${USAGE}`);
  process.exit(2);
}
if (flags.help) {
  console.log(USAGE);
  process.exit(0);
}

let topology: Topology | undefined;
try {
  // npm runs the script in the package folder; a relative path means the folder npm was called from.
  if (flags.topology !== undefined) topology = loadTopology(resolve(process.env.INIT_CWD ?? process.cwd(), flags.topology));
} catch (err) {
  fail(err instanceof Error ? err.message : String(err));
}

const dataDir = process.env.SWITCHYARD_DATA_DIR ?? join(ROOT, ".data", "dev");
// A signal during the start stops what has started so far (startStack cleans up when aborted).
const starting = new AbortController();
const abortStart = () => {
  console.log("\nStopping Switchyard…");
  starting.abort();
};
process.once("SIGINT", abortStart);
process.once("SIGTERM", abortStart);
const stack = await startStack({
  dataDir,
  databaseUrl: process.env.DATABASE_URL || undefined,
  redisUrl: process.env.REDIS_URL || "redis://127.0.0.1:6379",
  redisPrefix: process.env.SWITCHYARD_REDIS_PREFIX || "sy:dev:",
  redisWriteRttMs: redisRtt.write,
  redisReadRttMs: redisRtt.read,
  host: "127.0.0.1",
  gatewayPort: Number(process.env.PORT || 8787),
  simArgs: (process.env.SIM_ARGS ?? "").split(" ").filter(Boolean),
  echo: process.env.SWITCHYARD_QUIET !== "1",
  topology,
  onProgress: (step) => console.log(`Starting ${step}…`),
  signal: starting.signal,
}).catch((err: unknown) => {
  if (starting.signal.aborted) process.exit(0);
  return fail(err instanceof Error ? err.message : String(err));
});
process.off("SIGINT", abortStart);
process.off("SIGTERM", abortStart);

/** A path relative to the repository when it is inside it. */
function shortPath(path: string): string {
  const rel = relative(ROOT, path);
  return rel.startsWith("..") ? path : rel;
}

/** The node table printed with a topology. */
function nodeTable(s: Stack): string[] {
  const rows = [
    ["NODE", "REGION", "BACKPLANE", "ENGINE", "PIDS (backplane/engine)"],
    ...s.nodes.map((n) => [n.id, n.region, n.backplaneUrl, n.simUrl, `${n.backplane.process.pid ?? "?"}/${n.sim.process.pid ?? "?"}`]),
  ];
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => r[i]?.length ?? 0))) ?? [];
  return rows.map((r) => `  ${r.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join("  ")}`.trimEnd());
}

console.log("");
console.log(`Gateway: ${stack.gatewayUrl}/v1`);
console.log(`Dashboard: ${stack.gatewayUrl}/dashboard (sign in with the admin token below)`);
console.log(`Demo API key: ${stack.apiKey}`);
console.log(`Admin token: ${stack.adminToken}`);
console.log(`Postgres: ${stack.databaseUrl}${stack.embeddedPostgres ? ` (embedded PGlite under ${shortPath(join(dataDir, "pglite"))})` : ""}`);
if (redisRtt.write > 0 || redisRtt.read > 0) {
  console.log(`Redis distance (modelled by the local Upstash adapter): writes +${redisRtt.write} ms, reads +${redisRtt.read} ms per request`);
}
if (topology) {
  console.log("");
  console.log(`Nodes (${stack.nodes.length} in ${topology.regions.length} regions):`);
  for (const line of nodeTable(stack)) console.log(line);
}
console.log("");
console.log("Try it:");
console.log(`  curl ${stack.gatewayUrl}/v1/chat/completions -H "Authorization: Bearer ${stack.apiKey}" -H "Content-Type: application/json" -d '{"model":"sim-llama-8b","messages":[{"role":"user","content":"Hello"}]}'`);
const region = topology?.regions[0];
if (region) {
  console.log(`  (add -H "x-switchyard-client-location: ${region.latitude},${region.longitude}" to call from ${region.name})`);
}
const urlFlag = stack.gatewayUrl === "http://127.0.0.1:8787" ? "" : ` --url ${stack.gatewayUrl}`;
console.log(`  npm run admin -- tenant list${urlFlag}    (the admin CLI reads the local admin token by itself)`);
console.log("Press Ctrl-C to stop.");

let stopping = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    console.log("\nStopping Switchyard…");
    void stack.close().then(() => process.exit(0));
  });
}
const nodeProcesses = new Set(topology ? stack.nodes.flatMap((n) => [n.sim.process, n.backplane.process]) : []);
for (const child of stack.children) {
  child.process.once("exit", (code, signal) => {
    if (stopping) return;
    // With a topology, a node dying (say, `kill -9` of its pid) is what failover is for: the rest keeps running.
    if (nodeProcesses.has(child.process)) {
      console.error(`\n${child.name} exited (${signal ?? `code ${code}`}); the other nodes keep running.`);
      return;
    }
    console.error(`\n${child.name} exited unexpectedly (code ${code}). Stopping the stack.\n${child.recentOutput()}`);
    stopping = true;
    void stack.close().then(() => process.exit(1));
  });
}
