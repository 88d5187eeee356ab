/**
 * `npm run serve`: the Switchyard worker on plain workerd, for on-premises and air-gapped hosts
 * (docs/self-hosting.md). Exits 0 after SIGTERM or SIGINT once everything stopped; exits 1 when
 * workerd dies by itself (systemd's Restart=always brings it back) or the start fails; 2 on a bad
 * setting.
 */
import { redactUrl } from "../../dev/redis.ts";
import { startGateway, type Gateway, type GatewayLog } from "./gateway.ts";
import { parseServeSettings, SERVE_HELP, SettingsError, type ServeSettings } from "./settings.ts";

const log: GatewayLog = (level, event, fields) => {
  const line = JSON.stringify({ level, event, at: new Date().toISOString(), ...fields });
  if (level === "info") process.stdout.write(`${line}\n`);
  else process.stderr.write(`${line}\n`);
};

let settings: ServeSettings | null;
try {
  settings = parseServeSettings(process.argv.slice(2), process.env);
} catch (err) {
  if (!(err instanceof SettingsError)) throw err;
  process.stderr.write(`serve: ${err.message}\n`);
  process.exit(2);
}
if (settings === null) {
  process.stdout.write(SERVE_HELP);
  process.exit(0);
}

let gateway: Gateway | null = null;
let stopping = false;

// The first signal stops in order (crons, workerd's open requests, the adapters); a second one
// does not wait. A signal during the start stops once the start has settled.
const onSignal = (signal: NodeJS.Signals) => {
  if (stopping) {
    log("warn", "gateway.stop_forced", { signal });
    process.exit(1);
  }
  stopping = true;
  log("info", "gateway.stopping", { signal });
  void (async () => {
    await gateway?.close();
    log("info", "gateway.stopped", {});
    process.exit(0);
  })();
};
process.on("SIGTERM", onSignal);
process.on("SIGINT", onSignal);

log("info", "gateway.starting", {
  host: settings.host,
  port: settings.port,
  data_dir: settings.dataDir,
  bundle: settings.bundle,
  database: redactUrl(settings.databaseUrl),
  redis: redactUrl(settings.redisUrl),
  migrate: settings.migrate,
  ...(settings.cronIntervalMs === null ? {} : { cron_interval_ms: settings.cronIntervalMs }),
});
try {
  gateway = await startGateway(settings, process.env, log);
} catch (err) {
  const message = err instanceof Error ? err.message : String(err);
  log("error", "gateway.start_failed", { error: message });
  process.exit(err instanceof SettingsError ? 2 : 1);
}
if (stopping) {
  await gateway.close();
  log("info", "gateway.stopped", {});
  process.exit(0);
}
log("info", "gateway.listening", { url: gateway.url, release: gateway.release, workerd_pid: gateway.workerd.pid });

// Supervision: workerd dying by itself takes the whole gateway down, so the service manager restarts
// it as one (the adapters hold no state worth keeping).
const exit = await gateway.unexpectedExit;
log("error", "gateway.workerd_exited", { code: exit.code, signal: exit.signal });
await gateway.close();
process.exit(1);
