import { parseArgs } from "node:util";

/** The benchmark's settings after parsing the command line. */
export interface BenchArgs {
  /** Smoke mode: a few seconds, the project's own targets only, no routing benchmark. */
  quick: boolean;
  rounds: number;
  concurrency: number;
  durationSec: number;
  throughputRounds: number;
  routing: boolean;
  routingRequests: number;
  /** The multi-isolate exactness run (exactness.ts). */
  exactness: boolean;
  /** The federated-attention syncs (fedattn.ts). */
  fedattn: boolean;
  /** The mixed-priority run at 150 % of capacity (priority.ts). */
  priority: boolean;
  /** Redis write round trips (ms) the full path is measured at, ascending, 0 (the `switchyard` target) always first. */
  redisWriteRtts: number[];
}

/** A bad flag: printed with the help hint, exit code 2. */
export class UsageError extends Error {}

/** The --help text. */
export const HELP = `Usage: npm run bench -- [options]

Compares, on this machine and in one run, the same simulated vLLM engine (fast mode) reached
directly, through the backplane alone, through the full Switchyard path on plain workerd (every
policy on; with Redis next door and again with every Redis write at each --redis-write-rtts
distance), through nginx and the Portkey gateway, and through bare Hono forwarders on workerd and
on Node; then the routing benchmark (round-robin vs least-load vs prefix-affinity).

Options:
  --quick              smoke mode: a few seconds, the project's own targets only, no routing benchmark
  --rounds N           latency probe rounds at concurrency 1 (default 300; quick 20)
  --concurrency C      wrk connections for the throughput runs (default 16)
  --duration S         seconds per wrk run, at most 45 (default 4; quick 1)
  --throughput-rounds R  wrk runs per target and mode, interleaved (default 2; quick 1)
  --routing-requests N streamed requests per strategy in the routing benchmark (default 400)
  --no-routing         skip the routing benchmark
  --no-exactness       skip the exactness run across three workerd processes (quick skips it; npm test runs it)
  --no-fedattn         skip the federated-attention syncs (quick runs 3 × 1 MB and 3 × 8 MB only);
                       npx node bench/fedattn.ts [--quick] runs that section alone
  --no-priority        skip the mixed-priority run at 150 % of capacity (quick runs it for 5 s);
                       npx node bench/priority.ts [--quick] runs that section alone
  --redis-write-rtts L Redis write round trips in ms to run the full path at, comma-separated; each
                       above 0 is its own edge (default 0,20,80; quick 0,80; 0 is always included)
  --help               show this text

Environment (fallbacks):
  PG_ADMIN_URL         Postgres where throwaway databases are created (default postgres://postgres@127.0.0.1:5432/postgres)
  REDIS_URL            Redis used with throwaway key prefixes (default redis://127.0.0.1:6379)

Writes bench/results/<time>.md and .json (and latest.md / latest.json), prints a summary, and
exits 1 when any request failed or any hop's answer differed from the engine's.`;

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
        quick: { type: "boolean" },
        rounds: { type: "string" },
        concurrency: { type: "string" },
        duration: { type: "string" },
        "throughput-rounds": { type: "string" },
        "routing-requests": { type: "string" },
        "no-routing": { type: "boolean" },
        "no-exactness": { type: "boolean" },
        "no-fedattn": { type: "boolean" },
        "no-priority": { type: "boolean" },
        "redis-write-rtts": { type: "string" },
        help: { type: "boolean" },
      },
    }));
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  if (values.help === true) return null;
  const quick = values.quick === true;
  return {
    quick,
    rounds: integer("rounds", values.rounds, quick ? 20 : 300, 1, 100_000),
    concurrency: integer("concurrency", values.concurrency, 16, 1, 1024),
    // At most 45: the backplane target's requests are signed just before each run and expire 60 s later.
    durationSec: integer("duration", values.duration, quick ? 1 : 4, 1, 45),
    throughputRounds: integer("throughput-rounds", values["throughput-rounds"], quick ? 1 : 2, 1, 100),
    routing: !quick && values["no-routing"] !== true,
    exactness: !quick && values["no-exactness"] !== true,
    fedattn: values["no-fedattn"] !== true,
    priority: values["no-priority"] !== true,
    routingRequests: integer("routing-requests", values["routing-requests"], 400, 20, 100_000),
    redisWriteRtts: rttList(values["redis-write-rtts"], quick ? [0, 80] : [0, 20, 80]),
  };
}

/** `--redis-write-rtts`: whole milliseconds from 0 to 1000, comma-separated; sorted, without repeats, with 0. */
function rttList(raw: string | undefined, fallback: number[]): number[] {
  if (raw === undefined) return fallback;
  const items = raw.split(",").map((x) => x.trim());
  const bad = items.find((x) => !/^\d+$/.test(x) || Number(x) > 1000);
  if (bad !== undefined) throw new UsageError(`--redis-write-rtts takes whole milliseconds from 0 to 1000, comma-separated (e.g. 0,20,80), got "${raw}".`);
  return [...new Set([0, ...items.map(Number)])].sort((a, b) => a - b);
}
