/**
 * `backplane` command line: `start` runs the daemon in front of an engine, `sim` runs the simulated
 * vLLM engine. This is the only file that reads process.env and argv.
 */
import { parseArgs } from "node:util";
import { ConfigError, parseConfig, SETTING_NAMES, type BackplaneConfig } from "./config.ts";
import { BackplaneServer } from "./server.ts";
import { parseSimArgs, SIM_HELP, SimOptionsError, startSimEngine } from "./sim/index.ts";

const HELP = `Usage: backplane <command> [options]

Commands:
  start    Run the backplane in front of an OpenAI-compatible engine (vLLM, SGLang, llama.cpp, Ollama /v1)
  sim      Run the simulated vLLM engine (no GPU needed)

Run 'backplane <command> --help' for the options of a command.`;

const START_HELP = `Usage: backplane start [options]

Every option can also be set by the environment variable shown; flags win.
${Object.values(SETTING_NAMES)
  .map(({ flag, env }) => `  ${flag.padEnd(22)} ${env}`)
  .join("\n")}

  --node-id and --secret and --engine-url are required. Defaults: --host 0.0.0.0, --port 8443,
  --engine-timeout-ms 30000. See docs/configuration.md for what each setting does.`;

function log(event: string, fields: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ event, at: new Date().toISOString(), ...fields })}\n`);
}

function onShutdown(close: () => Promise<void>): void {
  let stopping = false;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      if (stopping) return;
      stopping = true;
      void close().then(() => process.exit(0));
    });
  }
}

async function start(argv: string[]): Promise<void> {
  const options = Object.fromEntries(
    Object.values(SETTING_NAMES).map(({ flag }) => [flag.slice(2), { type: "string" as const }]),
  );
  const { values } = parseArgs({ args: argv, options: { ...options, help: { type: "boolean" } }, strict: true });
  const flags = values as Record<string, string | boolean | undefined>;
  if (flags.help) {
    console.log(START_HELP);
    return;
  }
  const raw: Partial<Record<keyof BackplaneConfig, unknown>> = {};
  for (const [field, { flag, env }] of Object.entries(SETTING_NAMES)) {
    raw[field as keyof BackplaneConfig] = flags[flag.slice(2)] ?? process.env[env];
  }
  const config = parseConfig(raw);
  const server = new BackplaneServer(config, log);
  const url = await server.listen();
  log("backplane_listening", { url, nodeId: config.nodeId, engineUrl: config.engineUrl });
  onShutdown(() => server.close());
}

async function sim(argv: string[]): Promise<void> {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(SIM_HELP);
    return;
  }
  const engine = await startSimEngine(parseSimArgs(argv));
  console.log(`Simulated vLLM engine listening on ${engine.url}`);
  onShutdown(() => engine.close());
}

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  if (command === "start") return start(rest);
  if (command === "sim") return sim(rest);
  console.log(HELP);
  if (command !== undefined && command !== "--help" && command !== "-h" && command !== "help") process.exitCode = 2;
}

main().catch((err: unknown) => {
  const usage = err instanceof ConfigError || err instanceof SimOptionsError || (err instanceof TypeError && "code" in err && String(err.code).startsWith("ERR_PARSE_ARGS"));
  console.error(usage ? (err as Error).message : err);
  process.exit(usage ? 2 : 1);
});
