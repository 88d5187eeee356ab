/**
 * `npm run bench`: what the gateway adds on top of the engine. Starts the local stack on a
 * throwaway database and Redis prefix, runs each scenario directly against the simulated engine and
 * through the gateway, prints a table and writes bench/results/latest.json. See bench/README.md.
 */
import { join } from "node:path";
import { HELP, parseBenchArgs, UsageError, type BenchArgs } from "./args.ts";
import { runBench } from "./bench.ts";
import { formatReport, writeReport } from "./report.ts";
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
      console.error("Forced exit: the stack, the sy_bench_* database or the sy:bench:* Redis keys may be left behind.");
      process.exit(130);
    }
    console.error(`\n${signal}: stopping and cleaning up (send it again to force)…`);
    controller.abort(new Error(`interrupted by ${signal}`));
  });
}

const resultsFile = join(import.meta.dirname, "results", "latest.json");
try {
  const report = await runBench(args, {
    pgAdminUrl: process.env.PG_ADMIN_URL || "postgres://postgres@127.0.0.1:5432/postgres",
    redisUrl: process.env.REDIS_URL || "redis://127.0.0.1:6379",
    signal: controller.signal,
    teardown,
    log: (line) => console.error(line),
  });
  await writeReport(report, resultsFile);
  console.log(`\n${formatReport(report)}\n\nJSON: ${resultsFile}`);
} catch (err) {
  if (controller.signal.aborted) {
    console.error("Benchmark interrupted; nothing was written.");
    process.exitCode = 130;
  } else {
    console.error(`\nBenchmark failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  }
} finally {
  await teardown.close();
}
