/**
 * `backplane` command line: `start` runs the daemon, `sim` the simulated vLLM engine, `doctor`
 * checks a host, `install-service` writes the systemd unit, `fedattn` takes part in a
 * federated-attention session. The only file that reads argv and env.
 */
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { ConfigError, parseConfig, rawFromFlagsAndEnv, SETTINGS, type BackplaneConfig, type SettingName } from "./config.ts";
import { startDaemon } from "./daemon.ts";
import { FEDATTN_HELP, FEDATTN_OPTIONS, fedattnCommand, formatSessions, formatSummary, gatewayUrlOf, participantOptions, progressLine, requestTimeoutOf } from "./fedattn/cli.ts";
import { FedattnError } from "./fedattn/errors.ts";
import { createFedattnGateway } from "./fedattn/gateway.ts";
import { activeSessions, runParticipant } from "./fedattn/participant.ts";
import { doctorExitCode, doctorFromSettings, formatChecks } from "./ops/doctor.ts";
import { DEFAULT_USER, ensureSystemUser, installService, SERVICE_HELP } from "./ops/install-service.ts";
import { parseSimArgs, SIM_HELP, SimOptionsError, startSimEngine } from "./sim/index.ts";

const BOOLEAN_SETTINGS = new Set<SettingName>(["allowInsecureHttp", "spotAws", "spotGcp", "spotAzure"]);

const HELP = `Usage: backplane <command> [options]

Commands:
  start            Run the backplane in front of one or more engines (vLLM, OpenAI-compatible, Ollama)
  sim              Run the simulated vLLM engine (no GPU needed)
  doctor           Check this host: config, engines, gateway, clock and node secret, TLS files, GPUs
  install-service  Write a systemd unit and an env file with this configuration
  fedattn          Take part in a federated-attention session (start, join, status)

Run 'backplane <command> --help' for the options of a command. Settings: docs/backplane.md.`;

const SETTINGS_HELP = (Object.entries(SETTINGS) as [SettingName, (typeof SETTINGS)[SettingName]][])
  .map(([, s]) => `  ${s.flag.padEnd(26)} ${s.env.padEnd(34)} ${s.help}`)
  .join("\n");

const START_HELP = `Usage: backplane start [options]

Every option can also be set by its environment variable; flags win.
${SETTINGS_HELP}

SIGTERM or SIGINT drains (no new requests, accepted ones finish within --drain-grace-ms) and exits 0;
a second signal exits at once.`;

const DOCTOR_HELP = `Usage: backplane doctor [options]

Takes the same options as 'backplane start' and checks them without starting: every invalid setting
(all of them, not just the first), engines reachable, gateway reachable and clock skew, the node
secret accepted by the gateway (a signed probe that changes nothing), TLS files, GPU visibility.
Exits 1 when a check fails.`;

function settingOptions(): Record<string, { type: "string" | "boolean"; multiple?: boolean }> {
  const options: Record<string, { type: "string" | "boolean"; multiple?: boolean }> = { help: { type: "boolean" } };
  for (const [name, s] of Object.entries(SETTINGS) as [SettingName, (typeof SETTINGS)[SettingName]][]) {
    options[s.flag.slice(2)] = BOOLEAN_SETTINGS.has(name) ? { type: "boolean" } : name === "engines" ? { type: "string", multiple: true } : { type: "string" };
  }
  return options;
}

function parse(argv: string[], extra: Record<string, { type: "string" | "boolean" }> = {}) {
  const { values } = parseArgs({ args: argv, options: { ...settingOptions(), ...extra }, strict: true });
  return values as Record<string, string | string[] | boolean | undefined>;
}

function configFrom(flags: Record<string, string | string[] | boolean | undefined>): BackplaneConfig {
  return parseConfig(rawFromFlagsAndEnv(flags, process.env));
}

async function start(argv: string[]): Promise<void> {
  const flags = parse(argv);
  if (flags.help) return void console.log(START_HELP);
  const daemon = await startDaemon(configFrom(flags));
  let signals = 0;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      signals++;
      if (signals > 1) {
        // A second signal: the operator wants out now.
        void daemon.abort().finally(() => process.exit(1));
        return;
      }
      void daemon.drainAndClose(signal).then(() => process.exit(0));
    });
  }
}

async function sim(argv: string[]): Promise<void> {
  if (argv.includes("--help") || argv.includes("-h")) return void console.log(SIM_HELP);
  const engine = await startSimEngine(parseSimArgs(argv));
  console.log(`Simulated vLLM engine listening on ${engine.url}`);
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => void engine.close().then(() => process.exit(0)));
}

async function doctor(argv: string[]): Promise<void> {
  const flags = parse(argv);
  if (flags.help) return void console.log(DOCTOR_HELP);
  const checks = await doctorFromSettings(rawFromFlagsAndEnv(flags, process.env));
  console.log(formatChecks(checks));
  process.exitCode = doctorExitCode(checks);
}

async function install(argv: string[]): Promise<void> {
  const extra = {
    "unit-path": { type: "string" as const },
    // Not "--env-file": Node itself consumes that flag anywhere on its command line.
    "environment-file": { type: "string" as const },
    user: { type: "string" as const },
    "memory-max": { type: "string" as const },
    force: { type: "boolean" as const },
    "dry-run": { type: "boolean" as const },
  };
  const flags = parse(argv, extra);
  if (flags.help) return void console.log(SERVICE_HELP);
  const config = configFrom(flags);
  // The env file holds the daemon's settings as BACKPLANE_* variables, exactly as given.
  const raw = rawFromFlagsAndEnv(flags, process.env);
  const env: Record<string, string> = {};
  for (const [name, s] of Object.entries(SETTINGS) as [SettingName, (typeof SETTINGS)[SettingName]][]) {
    const value = raw[name];
    if (value === undefined || value === "" || value === false) continue;
    // Flags and env give strings, string lists or `true`; JSON keeps `true` as "true".
    env[s.env] = Array.isArray(value) ? value.join(";") : typeof value === "string" ? value : JSON.stringify(value);
  }
  const root = resolve(import.meta.dirname, "../..");
  const result = await installService({
    unitPath: typeof flags["unit-path"] === "string" ? flags["unit-path"] : "/etc/systemd/system/switchyard-backplane.service",
    envFile: typeof flags["environment-file"] === "string" ? flags["environment-file"] : "/etc/switchyard/backplane.env",
    workingDirectory: root,
    execStart: `${process.execPath} ${resolve(root, "backplane/src/main.ts")} start`,
    user: typeof flags.user === "string" ? (flags.user === "root" ? null : flags.user) : DEFAULT_USER,
    ensureUser: ensureSystemUser,
    memoryMax: typeof flags["memory-max"] === "string" ? flags["memory-max"] : "2G",
    readWritePaths: [],
    drainGraceMs: config.drainGraceMs,
    force: flags.force === true,
    dryRun: flags["dry-run"] === true,
    env,
  });
  for (const warning of result.warnings) console.error(`warning: ${warning}`);
  if (flags["dry-run"] === true) {
    console.log(`# ${result.unitPath}\n${result.preview.unit}\n# ${result.envFile} (mode 0600; secrets shown redacted)\n${result.preview.envFile}`);
    return;
  }
  console.log(`Wrote ${result.unitPath} and ${result.envFile} (mode 0600). Now run:\n${result.commands.map((c) => `  ${c}`).join("\n")}`);
}

async function fedattn(argv: string[]): Promise<void> {
  const [word, ...rest] = argv;
  if (word === undefined || word === "--help" || word === "-h" || argv.includes("--help") || argv.includes("-h")) return void console.log(FEDATTN_HELP);
  const command = fedattnCommand(word);
  const flags = parse(rest, FEDATTN_OPTIONS);
  const config = configFrom(flags);
  const json = flags.json === true;
  if (command === "status") {
    const gateway = createFedattnGateway(gatewayUrlOf(config), config.nodeId, config.secret);
    const session = typeof flags.session === "string" ? flags.session : undefined;
    const sessions = (await activeSessions(gateway, requestTimeoutOf(flags))).filter((s) => session === undefined || s.session_id === session);
    console.log(json ? JSON.stringify(sessions, null, 2) : formatSessions(sessions));
    return;
  }
  const options = participantOptions(command, flags, config);
  const summary = await runParticipant({
    ...options,
    log: (event, fields) => {
      const line = progressLine(event, fields);
      if (line !== null) console.error(line);
    },
  });
  console.log(json ? JSON.stringify(summary, null, 2) : formatSummary(summary));
}

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  if (command === "start") return start(rest);
  if (command === "sim") return sim(rest);
  if (command === "doctor") return doctor(rest);
  if (command === "install-service") return install(rest);
  if (command === "fedattn") return fedattn(rest);
  console.log(HELP);
  if (command !== undefined && command !== "--help" && command !== "-h" && command !== "help") process.exitCode = 2;
}

main().catch((err: unknown) => {
  if (err instanceof FedattnError) {
    // Its message says what happened and what to do; a stack trace would only bury it.
    console.error(err.message);
    process.exit(err.code === "invalid_options" ? 2 : 1);
  }
  const usage =
    err instanceof ConfigError ||
    err instanceof SimOptionsError ||
    (err instanceof TypeError && "code" in err && String(err.code).startsWith("ERR_PARSE_ARGS"));
  console.error(usage ? err.message : err);
  process.exit(usage ? 2 : 1);
});
