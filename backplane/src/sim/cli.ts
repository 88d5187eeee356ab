/**
 * Entry point: `npx node backplane/src/sim/cli.ts --port 8000` (also `backplane sim`).
 * The only place that reads argv and the environment for the simulator.
 */
import { isHelpRequest, parseSimArgs, SIM_HELP } from "./args.ts";
import { startSimEngine } from "./server.ts";

/** Starts the simulator from command-line flags and stops it on SIGINT/SIGTERM. */
export async function runSimCli(argv: readonly string[]): Promise<void> {
  if (isHelpRequest(argv)) {
    process.stdout.write(SIM_HELP);
    return;
  }
  const options = parseSimArgs(argv, process.env);
  const engine = await startSimEngine(options);
  const names = options.models.map((m) => `${m.name} (${m.kind}, ${m.maxModelLen})`).join(", ");
  process.stdout.write(`Simulated vLLM engine listening on ${engine.url} (models: ${names})\n`);
  const stop = (signal: NodeJS.Signals): void => {
    process.stdout.write(`Received ${signal}, shutting down\n`);
    void engine.close().then(() => process.exit(0));
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}

if (import.meta.main) {
  runSimCli(process.argv.slice(2)).catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(2);
  });
}
