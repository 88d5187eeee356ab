/**
 * A fake `sky` (SkyPilot's CLI) for tests, run through the `sky` wrapper that fake-sky-path.ts puts
 * on PATH. It appends each call to FAKE_SKY_LOG as a JSON line ({args, cwd, at, yaml?}) and keeps one
 * JSON file per cluster in FAKE_SKY_STATE:
 *
 * - `launch -y -d -c <cluster> <task.yaml>`: reads the task as SkyPilot would (resources, envs,
 *   secrets; the file must be private to its owner), and instead of a cloud VM running setup and
 *   run, starts on loopback a simulated engine (`backplane/src/main.ts sim`) serving the task's model
 *   and a backplane with the task's envs and secrets (BACKPLANE_ENGINES the sim instead of vLLM,
 *   BACKPLANE_PUBLIC_URL its loopback URL instead of a tunnel). Both run detached, and their pids
 *   are recorded for `down` and the tests' cleanup. FAKE_SKY_FAIL_LAUNCH=1 makes it fail like a
 *   cloud without capacity.
 * - `down -y <cluster>`: kills the cluster's processes and forgets it.
 * - `status`: lists the clusters.
 */
import { spawn } from "node:child_process";
import { appendFileSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parse } from "yaml";
import { freePort, waitForHttp } from "../../dev/ports.ts";
import { processAlive } from "./process-alive.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const NODE = join(ROOT, "node_modules", ".bin", "node");

/** A cluster as the fake keeps it. */
export interface FakeCluster {
  name: string;
  status: "UP";
  cloud: string;
  region: string;
  accelerators: string;
  useSpot: boolean;
  nodeId: string;
  backplaneUrl: string;
  simUrl: string;
  pids: number[];
  launchedAt: string;
}

/** A task as SkyPilot reads the fields this fake uses. */
interface Task {
  name?: string;
  workdir?: string;
  resources?: { cloud?: string; region?: string; accelerators?: string; use_spot?: boolean };
  envs?: Record<string, string | number | boolean | null>;
  secrets?: Record<string, string | null>;
  setup?: string;
  run?: string;
}

const logFile = process.env.FAKE_SKY_LOG;
const stateDir = process.env.FAKE_SKY_STATE;
if (!logFile || !stateDir) {
  console.error("fake sky: set FAKE_SKY_LOG and FAKE_SKY_STATE");
  process.exit(2);
}
mkdirSync(stateDir, { recursive: true });

function fail(message: string, code = 1): never {
  console.error(message);
  process.exit(code);
}

function clusterFile(name: string): string {
  return join(stateDir ?? "", `${name}.json`);
}

function strings(record: Record<string, unknown> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(record ?? {}).map(([k, v]) => [k, typeof v === "string" || typeof v === "number" || typeof v === "boolean" ? String(v) : ""]));
}

function startDetached(args: string[], env: Record<string, string>, log: string): number {
  const out = openSync(log, "a");
  const child = spawn(NODE, args, { cwd: ROOT, env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env }, stdio: ["ignore", out, out], detached: true });
  child.unref();
  if (child.pid === undefined) fail(`fake sky: could not start ${args.join(" ")}`);
  return child.pid;
}

function kill(pids: number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // Gone already.
    }
  }
}


async function launch(args: string[]): Promise<void> {
  const c = args.indexOf("-c");
  const cluster = c === -1 ? undefined : args[c + 1];
  const file = args.at(-1);
  if (!cluster || !file || !file.endsWith(".yaml")) fail("Usage: sky launch [-y] [-d] -c CLUSTER TASK.yaml", 2);
  if (!args.includes("-y")) fail("fake sky: launch without -y would prompt for confirmation", 2);
  if ((statSync(file).mode & 0o077) !== 0) fail(`fake sky: ${file} is readable by others (it holds secrets)`, 2);
  const text = readFileSync(file, "utf8");
  const task = parse(text) as Task;
  const envs = strings(task.envs ?? undefined);
  const secrets = strings(task.secrets ?? undefined);
  appendFileSync(logFile ?? "", `${JSON.stringify({ event: "task", cluster, task })}\n`);
  if (process.env.FAKE_SKY_FAIL_LAUNCH === "1") {
    fail(`sky.exceptions.ResourcesUnavailableError: Failed to provision all possible launchable resources. Relax the task's resource requirements: ${task.resources?.accelerators ?? "?"} in ${task.resources?.cloud ?? "?"}/${task.resources?.region ?? "?"}`);
  }
  if (existsSync(clusterFile(cluster))) fail(`fake sky: cluster ${cluster} exists already (the fake does not re-run tasks)`);
  const model = envs.SWITCHYARD_MODEL;
  if (!model) fail("fake sky: the task names no SWITCHYARD_MODEL");
  const simPort = await freePort();
  const backplanePort = await freePort();
  const simUrl = `http://127.0.0.1:${simPort}`;
  const backplaneUrl = `http://127.0.0.1:${backplanePort}`;
  const logs = join(stateDir ?? "", cluster);
  mkdirSync(logs, { recursive: true });
  const pids: number[] = [];
  const save = () => {
    const state: FakeCluster = {
      name: cluster,
      status: "UP",
      cloud: task.resources?.cloud ?? "",
      region: task.resources?.region ?? "",
      accelerators: task.resources?.accelerators ?? "",
      useSpot: task.resources?.use_spot === true,
      nodeId: envs.BACKPLANE_NODE_ID ?? "",
      backplaneUrl,
      simUrl,
      pids,
      launchedAt: new Date().toISOString(),
    };
    writeFileSync(clusterFile(cluster), JSON.stringify(state));
  };
  try {
    pids.push(startDetached(["backplane/src/main.ts", "sim", "--host", "127.0.0.1", "--port", String(simPort), "--model", `${model}:generate:8192`], {}, join(logs, "sim.log")));
    save();
    await waitForHttp(`${simUrl}/health`, 20_000, () => pids.every(processAlive));
    // The task's envs and secrets as the run would export them; the sim stands in for vLLM, loopback for the tunnel.
    const env: Record<string, string> = {
      ...envs,
      ...secrets,
      BACKPLANE_HOST: "127.0.0.1",
      BACKPLANE_PORT: String(backplanePort),
      BACKPLANE_PUBLIC_URL: backplaneUrl,
      BACKPLANE_ENGINES: `kind=sim,id=sim-0,url=${simUrl},model=${model}`,
      BACKPLANE_LOG_LEVEL: "warn",
      ...(process.env.FAKE_SKY_HEARTBEAT_MS ? { BACKPLANE_HEARTBEAT_INTERVAL_MS: process.env.FAKE_SKY_HEARTBEAT_MS } : {}),
    };
    pids.push(startDetached(["backplane/src/main.ts", "start"], env, join(logs, "backplane.log")));
    save();
    await waitForHttp(`${backplaneUrl}/health`, 20_000, () => pids.every(processAlive));
  } catch (err) {
    kill(pids, "SIGKILL");
    rmSync(clusterFile(cluster), { force: true });
    const output = ["sim.log", "backplane.log"].map((f) => (existsSync(join(logs, f)) ? readFileSync(join(logs, f), "utf8").slice(-2000) : "")).join("\n");
    fail(`fake sky: the task's processes did not come up: ${err instanceof Error ? err.message : String(err)}\n${output}`);
  }
  console.log(`Launching a new cluster '${cluster}'.\n✓ Cluster launched: ${cluster}.\nJob submitted, ID: 1`);
}

async function down(args: string[]): Promise<void> {
  if (!args.includes("-y")) fail("fake sky: down without -y would prompt for confirmation", 2);
  const names = args.filter((a) => !a.startsWith("-"));
  if (names.length === 0) fail("Usage: sky down [-y] CLUSTER…", 2);
  for (const name of names) {
    const file = clusterFile(name);
    if (!existsSync(file)) {
      console.log(`Cluster(s) not found (tip: see \`sky status\`): ${name}`);
      continue;
    }
    const state = JSON.parse(readFileSync(file, "utf8")) as FakeCluster;
    kill(state.pids, "SIGTERM");
    const deadline = Date.now() + 10_000;
    while (state.pids.some(processAlive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    kill(state.pids, "SIGKILL");
    rmSync(file, { force: true });
    console.log(`Terminating cluster ${name}...done.`);
  }
}

function status(): void {
  const clusters = readdirSync(stateDir ?? "").filter((f) => f.endsWith(".json")).map((f) => JSON.parse(readFileSync(join(stateDir ?? "", f), "utf8")) as FakeCluster);
  if (clusters.length === 0) {
    console.log("Clusters\nNo existing clusters.");
    return;
  }
  console.log("Clusters\nNAME  INFRA  RESOURCES  STATUS");
  for (const c of clusters) console.log(`${c.name}  ${c.cloud} (${c.region})  1x(gpus=${c.accelerators}${c.useSpot ? ", spot" : ""})  ${c.status}`);
}

const [command = "", ...rest] = process.argv.slice(2);
appendFileSync(logFile, `${JSON.stringify({ args: [command, ...rest], cwd: process.cwd(), at: new Date().toISOString() })}\n`);
if (command === "launch") await launch(rest);
else if (command === "down") await down(rest);
else if (command === "status") status();
else fail(`fake sky: unsupported command "${command}"`, 2);
