import type { BackplaneConfig, RawConfig } from "../config.ts";
import { SETTINGS } from "../config.ts";
import { checkSettings } from "./doctor-config.ts";
import { checkGpu, checkTls } from "./doctor-host.ts";
import { checkEngine, checkGateway } from "./doctor-network.ts";
import { checkNodeSecret } from "./doctor-secret.ts";
import { type Check, check, isLoopbackHost } from "./doctor-types.ts";

/**
 * `backplane doctor`: checks what the daemon needs on this host (settings, engines, gateway, clock,
 * node secret, TLS, GPU) and says how to fix what is wrong. Read-only: it sends GETs, one signed
 * probe the gateway answers without changing anything, and runs `nvidia-smi -L`, nothing else.
 */

export type { Check } from "./doctor-types.ts";

/** Summarises the config and flags a public URL the deployed gateway cannot use. */
function checkConfig(config: BackplaneConfig): Check {
  const url = new URL(config.publicUrl);
  const engines = config.engines.map((e) => `${e.id} (${e.kind})`).join(", ");
  const detail = `node ${config.nodeId} in ${config.region}, public URL ${config.publicUrl}, listening on ${config.host}:${config.port}, engines: ${engines}`;
  const publicFlag = `${SETTINGS.publicUrl.flag} / ${SETTINGS.publicUrl.env}`;
  if (url.protocol === "http:" && !isLoopbackHost(url.hostname)) {
    return check("config", "warn", `${detail}; the public URL is plain HTTP on a non-loopback host, so requests reach the node unencrypted`, `serve HTTPS (${SETTINGS.tlsCertFile.flag}) or use a Cloudflare Tunnel hostname, and set ${publicFlag}`);
  }
  // Deployed Workers silently send fetch() to https://host:<port> on 443 (wire-formats §7).
  if (url.protocol === "https:" && url.port !== "") {
    return check("config", "warn", `${detail}; deployed Workers only reach port 443, not ${url.port}`, `serve on 443 (or a Cloudflare Tunnel hostname) and set ${publicFlag} without a port`);
  }
  return check("config", "ok", detail);
}

/** Runs every check (concurrently) and returns them in a stable order. Never throws for a failed check. */
export async function runDoctor(config: BackplaneConfig, opts: { fetch?: typeof fetch; now?: () => number } = {}): Promise<Check[]> {
  const fetchFn = opts.fetch ?? fetch;
  const now = opts.now ?? Date.now;
  const [engines, gateway, secret, tls, gpu] = await Promise.all([
    Promise.all(config.engines.map((engine) => checkEngine(engine, fetchFn))),
    checkGateway(config, fetchFn, now),
    checkNodeSecret(config, fetchFn),
    checkTls(config, now),
    checkGpu(config),
  ]);
  return [checkConfig(config), ...engines, ...gateway, ...(secret === null ? [] : [secret]), tls, gpu];
}

/**
 * `backplane doctor` from raw settings: every invalid setting as a failed check (the other checks
 * need a valid config and are skipped until then), else `runDoctor`.
 */
export async function doctorFromSettings(raw: RawConfig, opts: { fetch?: typeof fetch; now?: () => number } = {}): Promise<Check[]> {
  const verdict = checkSettings(raw);
  if (verdict.config === null) {
    return [...verdict.problems, check("checks", "warn", "engines, gateway, node secret, TLS and GPU were not checked", "fix the settings above, then run doctor again")];
  }
  return runDoctor(verdict.config, opts);
}

const LABEL: Record<Check["status"], string> = { ok: "ok  ", warn: "WARN", fail: "FAIL" };

/** The human-readable report: one line per check, its fix under it, and a count. */
export function formatChecks(checks: Check[]): string {
  const width = Math.max(0, ...checks.map((c) => c.name.length));
  const lines: string[] = [];
  for (const c of checks) {
    lines.push(`${LABEL[c.status]}  ${c.name.padEnd(width)}  ${c.detail}`);
    if (c.fix !== null) lines.push(`${" ".repeat(6 + width)}  fix: ${c.fix}`);
  }
  const count = (status: Check["status"]) => checks.filter((c) => c.status === status).length;
  const warns = count("warn");
  const fails = count("fail");
  lines.push("", `${count("ok")} ok, ${warns} warning${warns === 1 ? "" : "s"}, ${fails} failure${fails === 1 ? "" : "s"}`);
  return `${lines.join("\n")}\n`;
}

/** Exit code for `backplane doctor`: 1 when any check failed, 0 otherwise (warnings included). */
export function doctorExitCode(checks: Check[]): number {
  return checks.some((c) => c.status === "fail") ? 1 : 0;
}
