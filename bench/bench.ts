import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDatabase, dropDatabase } from "../dev/postgres.ts";
import { checkRedis, redactUrl } from "../dev/redis.ts";
import { startStack, type Stack } from "../dev/stack.ts";
import type { BenchArgs } from "./args.ts";
import { cpuDelta, listeningPid, processTree, sampleCpu, type CpuTargets } from "./cpu.ts";
import { LoadClient } from "./load-client.ts";
import type { LoadSpec } from "./load.ts";
import { machineInfo, type BenchReport, type ScenarioResult } from "./report.ts";
import { chatBody, selectScenarios, type EngineProfile, type Scenario } from "./scenarios.ts";
import { added, summarisePhase, type PhaseSummary } from "./stats.ts";
import { deleteRedisPrefix, Teardown } from "./teardown.ts";
import { UsageRows } from "./usage-rows.ts";

/** Where the benchmark's throwaway state goes. */
export interface BenchDeps {
  pgAdminUrl: string;
  redisUrl: string;
  signal: AbortSignal;
  teardown: Teardown;
  log: (line: string) => void;
}

const REQUEST_TIMEOUT_MS = 30_000;
const RUN_DEADLINE_MS = 60_000;
const PG_START_COMMAND = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start";

/** Enough warm-up for the isolate, the key and routing caches, the JIT and every keep-alive connection. */
export function warmupRequests(args: BenchArgs): number {
  return Math.max(2 * args.concurrency, Math.min(100, Math.ceil(args.requests / 4)));
}

interface Context {
  args: BenchArgs;
  deps: BenchDeps;
  client: LoadClient;
  usage: UsageRows;
}

/**
 * The stack's processes by component. `wrangler dev` runs two workerd processes: one listening on
 * the gateway port that proxies every request (wrangler's ProxyWorker, which holds requests during
 * reloads) and one running the worker; production has neither that hop nor the wrangler process.
 */
function cpuTargets(stack: Stack): CpuTargets {
  const tree = (name: string) => {
    const pid = stack.children.find((c) => c.name === name)?.process.pid;
    return pid === undefined ? [] : processTree(pid);
  };
  const wrangler = tree("worker");
  const workerds = wrangler.filter((p) => p.comm === "workerd").map((p) => p.pid);
  const proxy = listeningPid(Number(new URL(stack.gatewayUrl).port), workerds);
  return {
    pids: {
      wranglerNode: wrangler.filter((p) => p.comm !== "workerd").map((p) => p.pid),
      workerdProxy: proxy === null ? [] : [proxy],
      workerdWorker: workerds.filter((pid) => pid !== proxy),
      backplane: tree("backplane").map((p) => p.pid),
      sim: tree("sim").map((p) => p.pid),
    },
    byName: { postgres: "postgres", redis: "redis-server" },
  };
}

/**
 * Warms one target up (caches, JIT, connections), then measures it. Through the gateway it also waits
 * for the usage rows, so the `waitUntil` tail is counted in the run that caused it.
 */
async function runPhase(ctx: Context, stack: Stack, scenario: Scenario, target: PhaseSummary["target"]): Promise<PhaseSummary> {
  const { args, deps, client, usage } = ctx;
  const gateway = target === "gateway";
  const spec: LoadSpec = {
    url: `${gateway ? stack.gatewayUrl : stack.simUrl}/v1/chat/completions`,
    headers: gateway ? { authorization: `Bearer ${stack.apiKey}` } : {},
    body: chatBody(scenario.stream),
    stream: scenario.stream,
    requests: args.requests,
    concurrency: args.concurrency,
    requestTimeoutMs: REQUEST_TIMEOUT_MS,
    deadlineMs: RUN_DEADLINE_MS,
  };
  const targets = cpuTargets(stack);

  const rowsAtStart = gateway ? await usage.count() : 0;
  const warm = await client.run({ ...spec, requests: warmupRequests(args) }, deps.signal);
  if (warm.latenciesMs.length === 0) {
    throw new Error(`every warm-up request to ${spec.url} failed: ${JSON.stringify(warm.errors)}`);
  }
  const rowsBefore = gateway ? await usage.waitFor(rowsAtStart + warm.latenciesMs.length, deps.signal, () => stack.runScheduled()) : 0;

  // Usage rows carry the worker's start time in whole ms; step past the warm-up's last millisecond.
  await new Promise((resolve) => setTimeout(resolve, 2));
  const startedAt = new Date();
  const cpuBefore = sampleCpu(targets);
  const load = await client.run(spec, deps.signal);
  let recorded: PhaseSummary["recorded"] = null;
  if (gateway) {
    const expected = load.latenciesMs.length;
    await usage.waitFor(rowsBefore + expected, deps.signal, () => stack.runScheduled());
    recorded = { expected, ...(await usage.recordedSince(startedAt)) };
  }
  const cpuAfter = sampleCpu(targets);
  const cpu = cpuBefore && cpuAfter ? cpuDelta(cpuBefore, cpuAfter) : null;
  return summarisePhase(target, spec.url, load, cpu, recorded);
}

async function startBenchStack(ctx: Context, engine: EngineProfile, dataDir: string, databaseUrl: string, redisPrefix: string): Promise<Stack> {
  ctx.deps.log(`Starting the local stack (engine: ${engine.description})…`);
  const stack = await startStack({
    dataDir,
    databaseUrl,
    redisUrl: ctx.deps.redisUrl,
    redisPrefix,
    host: "127.0.0.1",
    gatewayPort: 0,
    simArgs: engine.simArgs,
    echo: false,
  });
  ctx.deps.teardown.add(`stack (${engine.name} engine)`, () => stack.close());
  return stack;
}

/**
 * Creates a throwaway database and Redis prefix, and for each engine profile the scenarios need,
 * starts the local stack, runs each scenario directly against the engine and then through the
 * gateway, and stops the stack. Everything it creates is registered with `deps.teardown`.
 */
export async function runBench(args: BenchArgs, deps: BenchDeps): Promise<BenchReport> {
  const { signal, teardown } = deps;
  await checkRedis(deps.redisUrl);
  const suffix = randomBytes(5).toString("hex");
  const dbName = `sy_bench_${suffix}`;
  const redisPrefix = `sy:bench:${suffix}:`;
  teardown.add(`Redis keys ${redisPrefix}*`, () => deleteRedisPrefix(deps.redisUrl, redisPrefix));
  let databaseUrl: string;
  try {
    databaseUrl = await createDatabase(deps.pgAdminUrl, dbName);
  } catch (err) {
    throw new Error(
      `Could not create a database on the Postgres at ${redactUrl(deps.pgAdminUrl)} (${err instanceof Error ? err.message : String(err)}). ` +
        `Set PG_ADMIN_URL to a running Postgres (trust or password in the URL), or start the local one with: ${PG_START_COMMAND}`,
      { cause: err },
    );
  }
  teardown.add(`database ${dbName}`, () => dropDatabase(deps.pgAdminUrl, dbName));
  const dataDir = await mkdtemp(join(tmpdir(), "switchyard-bench-"));
  teardown.add(`data dir ${dataDir}`, () => rm(dataDir, { recursive: true, force: true }));
  const usage = new UsageRows(databaseUrl);
  teardown.add("usage pool", () => usage.close());
  const client = new LoadClient();
  teardown.add("load thread", () => client.close());
  const ctx: Context = { args, deps, client, usage };

  const scenarios = selectScenarios(args.scenario);
  const results: ScenarioResult[] = [];
  for (const engine of [...new Set(scenarios.map((s) => s.engine))]) {
    signal.throwIfAborted();
    const stack = await startBenchStack(ctx, engine, dataDir, databaseUrl, redisPrefix);
    signal.throwIfAborted();
    for (const scenario of scenarios.filter((s) => s.engine === engine)) {
      deps.log(`Running ${scenario.name}: direct…`);
      const direct = await runPhase(ctx, stack, scenario, "direct");
      deps.log(`Running ${scenario.name}: through the gateway…`);
      const gateway = await runPhase(ctx, stack, scenario, "gateway");
      results.push({ name: scenario.name, title: scenario.title, stream: scenario.stream, engine, direct, gateway, added: added(direct, gateway) });
    }
    await stack.close();
  }
  return {
    generatedAt: new Date().toISOString(),
    machine: machineInfo(),
    settings: {
      requests: args.requests,
      concurrency: args.concurrency,
      warmupRequests: warmupRequests(args),
      requestTimeoutMs: REQUEST_TIMEOUT_MS,
      runDeadlineMs: RUN_DEADLINE_MS,
    },
    scenarios: results,
  };
}
