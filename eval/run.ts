/**
 * `npm run eval -- --council <name>`: the council's evaluation harness (docs/eval.md). Runs the cases
 * through a running gateway with runEval (harness.ts), prints the table, exits 1 on any failure or
 * regression. The only file of eval/ that reads argv and the environment.
 */
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { readStackRecord } from "../dev/stack-record.ts";
import { EVAL_HELP, EvalUsageError, parseEvalArgs } from "./args.ts";
import { CasesError, loadCases } from "./cases.ts";
import { runEval } from "./harness.ts";
import { formatReport } from "./report.ts";

const HERE = import.meta.dirname;
const ROOT = resolve(HERE, "..");
const DEFAULT_URL = "http://127.0.0.1:8787";

/**
 * The API key: --key, else SWITCHYARD_API_KEY, else the demo key `npm start` keeps in its data folder
 * (SWITCHYARD_DATA_DIR if set, else the folder of the local stack serving `url`, else .data/dev), as
 * `npm run admin` finds the admin token.
 */
function apiKey(flag: string | null, url: string): string {
  if (flag !== null && flag !== "") return flag;
  if (process.env.SWITCHYARD_API_KEY) return process.env.SWITCHYARD_API_KEY;
  const dataDir = process.env.SWITCHYARD_DATA_DIR || readStackRecord(url) || join(ROOT, ".data", "dev");
  const file = join(dataDir, "demo-key");
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  throw new EvalUsageError(`No API key: pass --key, set SWITCHYARD_API_KEY, or start the local stack (npm start writes ${file}).`);
}

async function main(argv: readonly string[]): Promise<number> {
  const args = parseEvalArgs(argv);
  if (args === null) {
    process.stdout.write(EVAL_HELP);
    return 0;
  }
  const url = args.url ?? (process.env.SWITCHYARD_URL || DEFAULT_URL);
  const cases = loadCases(args.cases ?? join(HERE, "council-cases.json"));
  const key = apiKey(args.key, url);
  const report = await runEval({
    url,
    key,
    council: args.council,
    cases,
    resultsDir: args.results ?? join(HERE, "results"),
    save: args.save,
    ...(args.timeoutMs === null ? {} : { timeoutMs: args.timeoutMs }),
    log: args.json ? undefined : (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write(args.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
  return report.ok ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    const usage = error instanceof EvalUsageError || error instanceof CasesError;
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}${usage ? '\nRun "npm run eval -- --help" for the options.' : ""}\n`);
    process.exitCode = usage ? 2 : 1;
  },
);
