/**
 * `npm run bench`: the side-by-side comparison (compare.ts), the routing benchmark (routing.ts) and
 * the other sections (exactness, streaming profiles, caches, federated attention), on throwaway
 * databases and Redis prefixes; writes bench/results/ and prints a summary. See
 * bench/README.md and docs/performance.md.
 */
import { join } from "node:path";
import { HELP, parseBenchArgs, UsageError, type BenchArgs } from "./args.ts";
import { runCompare } from "./compare.ts";
import { checkTargets, distanceRows, formatReport, machineInfo, OUTPUT_TOKENS, writeReport, type BenchReport } from "./report.ts";
import { runExactness } from "./exactness.ts";
import { runRouting } from "./routing.ts";
import { runProfilesBench } from "./profiles.ts";
import { runCacheBench } from "./cache.ts";
import { runFedattnBench } from "./fedattn.ts";
import { runPriorityBench } from "./priority.ts";
import { Teardown } from "./teardown.ts";

let args: BenchArgs | null;
try {
  args = parseBenchArgs(process.argv.slice(2));
} catch (err) {
  if (!(err instanceof UsageError)) throw err;
  console.error(`${err.message}\nRun "npm run bench -- --help" for the options.`);
  process.exit(2);
}
if (args === null) {
  console.log(HELP);
  process.exit(0);
}

const controller = new AbortController();
const teardown = new Teardown();
let interrupts = 0;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    interrupts++;
    if (interrupts > 1) {
      console.error("Forced exit: processes, sy_bench_* databases or sy:bench:* Redis keys may be left behind.");
      process.exit(130);
    }
    console.error(`\n${signal}: stopping and cleaning up (send it again to force)…`);
    controller.abort(new Error(`interrupted by ${signal}`));
    void teardown.close().then(() => process.exit(130));
  });
}

const env = {
  pgAdminUrl: process.env.PG_ADMIN_URL || "postgres://postgres@127.0.0.1:5432/postgres",
  redisUrl: process.env.REDIS_URL || "redis://127.0.0.1:6379",
  host: "127.0.0.1",
};
const log = (line: string) => console.error(line);
try {
  const compare = await runCompare({ ...env, rounds: args.rounds, concurrency: args.concurrency, durationSec: args.durationSec, throughputRounds: args.throughputRounds, ownOnly: args.quick, redisWriteRtts: args.redisWriteRtts, teardown, log });
  // The comparison's processes stop before the routing benchmark starts its own.
  await teardown.close();
  // The exactness run (three workerd processes of one deployment) gets the machine to itself too.
  const exactnessTeardown = new Teardown();
  let exactness = null;
  try {
    if (args.exactness) exactness = await runExactness({ ...env, teardown: exactnessTeardown, log, signal: controller.signal });
  } finally {
    await exactnessTeardown.close();
  }
  const routingTeardown = new Teardown();
  let routing = null;
  try {
    if (args.routing) routing = await runRouting({ ...env, requests: args.routingRequests, concurrency: 12, teardown: routingTeardown, log, signal: controller.signal });
  } finally {
    await routingTeardown.close();
  }
  // In process, no servers: the re-chunker's and the tap's CPU per profiled stream.
  const profiles = await runProfilesBench(args.quick ? { streams: 50, rounds: 3 } : {});
  // The caches: hit against miss through the full path, and GPU requests avoided (bench/cache.ts).
  const cacheTeardown = new Teardown();
  let cache = null;
  try {
    cache = await runCacheBench({ ...env, rounds: args.quick ? 5 : 50, workloadRequests: args.quick ? 20 : 200, workloadDistinct: args.quick ? 8 : 50, teardown: cacheTeardown, log });
  } finally {
    await cacheTeardown.close();
  }
  // Federated-attention syncs through the coordinator (its own edge), then the same in process.
  const fedattnTeardown = new Teardown();
  let fedattn = null;
  try {
    if (args.fedattn) fedattn = await runFedattnBench({ ...env, quick: args.quick, teardown: fedattnTeardown, log });
  } finally {
    await fedattnTeardown.close();
  }
  // Mixed priority at 150 % of capacity: the edge queue and the engines' priority scheduling (its own edge).
  const priorityTeardown = new Teardown();
  let priority = null;
  try {
    if (args.priority) priority = await runPriorityBench({ ...env, quick: args.quick, teardown: priorityTeardown, log });
  } finally {
    await priorityTeardown.close();
  }
  const report: BenchReport = {
    generatedAt: new Date().toISOString(),
    machine: machineInfo(),
    settings: { ...args, outputTokens: OUTPUT_TOKENS },
    compare,
    distance: distanceRows(compare),
    routing,
    exactness,
    profiles,
    cache,
    fedattn,
    priority,
    targets: checkTargets(compare, routing, exactness, fedattn, priority),
  };
  const file = await writeReport(report, join(import.meta.dirname, "results"));
  console.log(`\n${formatReport(report)}\n\nReport: ${file} (and latest.json)`);
  const routingErrors = routing ? [...routing.unequal, ...routing.prefixes].reduce((n, r) => n + r.errors, 0) : 0;
  if (compare.errors.length > 0 || routingErrors > 0) {
    console.error(`\nBenchmark FAILED: ${compare.errors.length + routingErrors} errors (see the report).`);
    process.exitCode = 1;
  }
  if (cache && cache.errors.length > 0) {
    console.error(`\nBenchmark FAILED: the cache answered wrongly: ${cache.errors.join("; ")}`);
    process.exitCode = 1;
  }
  if (fedattn && fedattn.errors.length > 0) {
    console.error(`\nBenchmark FAILED: the federated-attention coordinator failed or answered wrongly: ${fedattn.errors.join("; ")}`);
    process.exitCode = 1;
  }
  if (priority && priority.errors.length > 0) {
    console.error(`\nBenchmark FAILED: mixed-priority requests failed: ${priority.errors.join("; ")}`);
    process.exitCode = 1;
  }
  if (exactness && !exactness.passed) {
    console.error(`\nBenchmark FAILED: a limit did not hold across isolates: ${exactness.failures.join("; ")}`);
    process.exitCode = 1;
  }
} catch (err) {
  if (controller.signal.aborted) {
    console.error("Benchmark interrupted; nothing was written.");
    process.exitCode = 130;
  } else {
    console.error(`\nBenchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exitCode = 1;
  }
} finally {
  await teardown.close();
}
