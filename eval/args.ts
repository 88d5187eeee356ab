import { parseArgs } from "node:util";

/** `npm run eval -- --help`. */
export const EVAL_HELP = `Evaluates a council through a running gateway: every case's question goes to
POST /v1/council/vote, and the vote's concerns, recommendation and persona answers are checked.

Usage: npm run eval -- [--council <name>] [--url <gateway>] [--key <api key>] [--cases <file>] [--save]

  --council <name>   the council to ask (default "default", the built-in one)
  --url <url>        the gateway (default $SWITCHYARD_URL or http://127.0.0.1:8787)
  --key <key>        an API key that may use the council (default $SWITCHYARD_API_KEY, else the
                     demo key of the local stack serving --url: <data dir>/demo-key)
  --cases <file>     the cases (default eval/council-cases.json)
  --save             keep this run: eval/results/<time>.json and eval/results/latest.json, the run
                     the next ones are compared with
  --results <dir>    folder of saved runs (default eval/results)
  --timeout <s>      give up on one vote after this many seconds (default 60)
  --json             print the report as JSON instead of the table
  -h, --help         show this text

Exit code: 0 when every case passes and none regressed against the saved run, 1 otherwise,
2 for a usage error. See docs/eval.md.
`;

/** Parsed flags; unset ones are filled by the caller (env, files). */
export interface EvalArgs {
  council: string;
  url: string | null;
  key: string | null;
  cases: string | null;
  results: string | null;
  save: boolean;
  json: boolean;
  timeoutMs: number | null;
}

/** A bad command line; the CLI prints it with the help hint and exits 2. */
export class EvalUsageError extends Error {
  override name = "EvalUsageError";
}

/** Parses the flags; null when help was asked for. */
export function parseEvalArgs(argv: readonly string[]): EvalArgs | null {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        council: { type: "string" },
        url: { type: "string" },
        key: { type: "string" },
        cases: { type: "string" },
        results: { type: "string" },
        timeout: { type: "string" },
        save: { type: "boolean" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (error) {
    throw new EvalUsageError(error instanceof Error ? error.message : String(error), { cause: error });
  }
  if (values.help === true) return null;
  let timeoutMs: number | null = null;
  if (values.timeout !== undefined) {
    const seconds = Number(values.timeout);
    if (!/^\d+(\.\d+)?$/.test(values.timeout) || seconds <= 0) throw new EvalUsageError(`--timeout: expected a number of seconds above 0, got "${values.timeout}"`);
    timeoutMs = seconds * 1000;
  }
  if (values.council === "") throw new EvalUsageError("--council: expected a council name");
  return {
    council: values.council ?? "default",
    url: values.url ?? null,
    key: values.key ?? null,
    cases: values.cases ?? null,
    results: values.results ?? null,
    save: values.save === true,
    json: values.json === true,
    timeoutMs,
  };
}
