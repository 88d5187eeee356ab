import { parseArgs } from "node:util";

/** Which scenarios to run: `stream` means both streamed scenarios (instant and paced engine). */
export type ScenarioChoice = "nonstream" | "stream" | "all";

/** The benchmark's settings after parsing the command line. */
export interface BenchArgs {
  requests: number;
  concurrency: number;
  scenario: ScenarioChoice;
}

/** A bad flag: printed with the help hint, exit code 2. */
export class UsageError extends Error {}

/** The --help text. */
export const HELP = `Usage: npm run bench -- [options]

Measures the latency and throughput the gateway adds on top of the engine: every scenario runs
directly against the simulated engine and then through the gateway (wrangler dev + backplane).

Options:
  --requests N        measured requests per scenario and target (default 400)
  --concurrency C     requests in flight at once (default 8)
  --scenario S        nonstream | stream | all (default all); "stream" runs both streamed scenarios
  --help              show this text

Environment (fallbacks):
  PG_ADMIN_URL        Postgres where a throwaway database is created (default postgres://postgres@127.0.0.1:5432/postgres)
  REDIS_URL           Redis used with a throwaway key prefix (default redis://127.0.0.1:6379)

Prints a table and writes bench/results/latest.json.`;

function integer(name: string, raw: string | undefined, fallback: number, min: number, max: number): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < min || value > max) {
    throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got "${raw}".`);
  }
  return value;
}

/** Parses argv (without node and script); returns null when --help was asked for. Throws UsageError. */
export function parseBenchArgs(argv: string[]): BenchArgs | null {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        requests: { type: "string" },
        concurrency: { type: "string" },
        scenario: { type: "string" },
        help: { type: "boolean" },
      },
    }));
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  if (values.help === true) return null;
  const scenario = values.scenario ?? "all";
  if (scenario !== "nonstream" && scenario !== "stream" && scenario !== "all") {
    throw new UsageError(`--scenario must be nonstream, stream or all, got "${scenario}".`);
  }
  return {
    requests: integer("requests", values.requests, 400, 1, 100_000),
    concurrency: integer("concurrency", values.concurrency, 8, 1, 256),
    scenario,
  };
}
