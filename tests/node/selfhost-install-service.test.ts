/**
 * `npm run gateway -- install-service`: the systemd unit of the self-hosted gateway and its env file,
 * written by the real CLI and checked by systemd's own `systemd-analyze verify` where it is installed.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ROOT } from "../../worker/selfhost/bundle.ts";
import { detectSystemdVersion, renderGatewayUnit, type GatewayUnitOptions } from "../../worker/selfhost/install-service.ts";

const run = promisify(execFile);
const GATEWAY = join(ROOT, "worker/selfhost/main.ts");
const SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze";

let dir = "";
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "sy-gw-service-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const SECRETS = {
  NODE_SIGNING_SECRET: "n".repeat(64),
  ADMIN_TOKEN: `admin "$HOME" \`x\` ${"a".repeat(40)}`,
  STRIPE_WEBHOOK_SECRET: "whsec_test",
  DASHBOARD_SECRET: `dash $PATH ${"d".repeat(40)}`,
  OTEL_EXPORTER_OTLP_HEADERS: "authorization=Bearer otlp-token",
};

/** Runs the CLI; resolves with its exit code and output (never rejects). */
async function gateway(args: string[], env: Record<string, string> = {}): Promise<{ code: number; output: string }> {
  const baseEnv = { PATH: process.env.PATH ?? "/usr/bin:/bin", DATABASE_URL: "postgres://gw:pass-word@127.0.0.1:5432/gw", REDIS_URL: "redis://127.0.0.1:6379", ...SECRETS, ...env };
  return run(process.execPath, [GATEWAY, "install-service", ...args], { cwd: ROOT, env: baseEnv }).then(
    ({ stdout, stderr }) => ({ code: 0, output: stdout + stderr }),
    (err: { code?: number; stdout?: string; stderr?: string }) => ({ code: err.code ?? -1, output: `${err.stdout ?? ""}${err.stderr ?? ""}` }),
  );
}

function paths() {
  return { unitDir: join(dir, "systemd"), unit: join(dir, "systemd", "switchyard-gateway.service"), envFile: join(dir, "etc", "switchyard", "gateway.env"), dataDir: join(dir, "data") };
}

const cliArgs = (p: ReturnType<typeof paths>, extra: string[] = []) => ["--user", "root", "--no-build", "--unit-dir", p.unitDir, "--environment-file", p.envFile, "--data-dir", p.dataDir, ...extra];

function unitOptions(overrides: Partial<GatewayUnitOptions> = {}): GatewayUnitOptions {
  return {
    unitPath: "/etc/systemd/system/switchyard-gateway.service",
    envFile: "/etc/switchyard/gateway.env",
    workingDirectory: ROOT,
    nodePath: process.execPath,
    dataDir: "/var/lib/switchyard-gateway",
    user: "switchyard",
    memoryMax: "2G",
    cpuQuota: "200%",
    limitNofile: 65536,
    port: 8787,
    stopTimeoutMs: 30_000,
    systemdVersion: 255,
    ...overrides,
  };
}

describe("gateway install-service", () => {
  it("renders a unit with restart back-off, journald logging, the sandbox and resource limits", () => {
    const lines = renderGatewayUnit(unitOptions()).split("\n");
    for (const directive of [
      "Restart=always",
      "RestartSec=2",
      "RestartSteps=5",
      "RestartMaxDelaySec=30",
      "StartLimitIntervalSec=0",
      "KillMode=mixed",
      "KillSignal=SIGTERM",
      "TimeoutStopSec=45",
      "StandardOutput=journal",
      "StandardError=journal",
      "SyslogIdentifier=switchyard-gateway",
      "NoNewPrivileges=true",
      "ProtectSystem=strict",
      "ProtectHome=true",
      "PrivateTmp=true",
      "StateDirectory=switchyard-gateway",
      "ReadWritePaths=/var/lib/switchyard-gateway",
      "MemoryMax=2G",
      "CPUQuota=200%",
      "LimitNOFILE=65536",
      "EnvironmentFile=/etc/switchyard/gateway.env",
      "User=switchyard",
      `WorkingDirectory=${ROOT}`,
      `ExecStart=${process.execPath} ${join(ROOT, "worker/selfhost/serve.ts")} --data-dir /var/lib/switchyard-gateway --bundle /var/lib/switchyard-gateway/current`,
      "WantedBy=multi-user.target",
    ]) {
      expect(lines, directive).toContain(directive);
    }
    // No MemoryDenyWriteExecute: V8's JIT writes executable memory.
    expect(lines.some((l) => l.startsWith("MemoryDenyWriteExecute"))).toBe(false);
    // systemd before 254 does not know the back-off keys; a port below 1024 gets the capability to bind it.
    const old = renderGatewayUnit(unitOptions({ systemdVersion: 252, port: 443 }));
    expect(old).not.toContain("RestartSteps");
    expect(old).not.toContain("RestartMaxDelaySec");
    expect(old).toContain("AmbientCapabilities=CAP_NET_BIND_SERVICE");
    expect(renderGatewayUnit(unitOptions({ dataDir: "/srv/switchyard" }))).not.toContain("StateDirectory=");
  });

  it("rejects options systemd would misread, naming the option", () => {
    expect(() => renderGatewayUnit(unitOptions({ dataDir: "relative/dir" }))).toThrow(/--data-dir must be an absolute path/);
    expect(() => renderGatewayUnit(unitOptions({ envFile: "/etc/a b.env" }))).toThrow(/--environment-file/);
    expect(() => renderGatewayUnit(unitOptions({ cpuQuota: "2" }))).toThrow(/--cpu-quota/);
    expect(() => renderGatewayUnit(unitOptions({ memoryMax: "lots" }))).toThrow(/--memory-max/);
    expect(() => renderGatewayUnit(unitOptions({ user: "bad user" }))).toThrow(/--user/);
  });

  it("writes the unit and a 0600 env file of known keys only, and refuses to overwrite them without --force", async () => {
    const p = paths();
    const first = await gateway(cliArgs(p), { SOME_OTHER_SETTING: "not-copied" });
    expect(first.code, first.output).toBe(0);
    expect(first.output).toContain(`Wrote ${p.unit}`);
    expect(first.output).toContain("systemctl enable --now switchyard-gateway");
    for (const secret of Object.values(SECRETS)) expect(first.output).not.toContain(secret);
    expect(first.output).not.toContain("pass-word");
    expect((await stat(p.envFile)).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, "etc", "switchyard"))).mode & 0o777).toBe(0o700);
    expect((await stat(p.unit)).mode & 0o777).toBe(0o644);

    // What systemd and a shell read back is exactly what was given.
    const keys = ["DATABASE_URL", "REDIS_URL", "NODE_SIGNING_SECRET", "ADMIN_TOKEN", "STRIPE_WEBHOOK_SECRET", "DASHBOARD_SECRET", "OTEL_EXPORTER_OTLP_HEADERS", "GATEWAY_HOST", "GATEWAY_PORT", "GATEWAY_STOP_TIMEOUT_MS", "SOME_OTHER_SETTING"];
    const script = `set -a; . "$1"; set +a; node -e 'console.log(JSON.stringify(Object.fromEntries(process.argv.slice(1).map((n)=>[n,process.env[n] ?? null]))))' ${keys.join(" ")}`;
    const { stdout } = await run("/bin/sh", ["-c", script, "sh", p.envFile], { env: { PATH: `${join(process.execPath, "..")}:/usr/bin:/bin` } });
    expect(JSON.parse(stdout)).toEqual({
      DATABASE_URL: "postgres://gw:pass-word@127.0.0.1:5432/gw",
      REDIS_URL: "redis://127.0.0.1:6379",
      ...SECRETS,
      GATEWAY_HOST: "127.0.0.1",
      GATEWAY_PORT: "8787",
      GATEWAY_STOP_TIMEOUT_MS: "30000",
      SOME_OTHER_SETTING: null,
    });

    await writeFile(p.envFile, "KEEP=me\n");
    const again = await gateway(cliArgs(p));
    expect(again.code).toBe(1);
    expect(again.output).toContain("already exist");
    expect(again.output).toContain("--force");
    expect(await readFile(p.envFile, "utf8")).toBe("KEEP=me\n");
    const forced = await gateway(cliArgs(p, ["--force"]));
    expect(forced.code, forced.output).toBe(0);
    expect(await readFile(p.envFile, "utf8")).toContain("ADMIN_TOKEN=");
  });

  it("generates the node signing secret, admin token and dashboard secret when the environment has none", async () => {
    const p = paths();
    const result = await gateway(cliArgs(p), { NODE_SIGNING_SECRET: "", ADMIN_TOKEN: "", DASHBOARD_SECRET: "" });
    expect(result.code, result.output).toBe(0);
    expect(result.output).toContain("Generated NODE_SIGNING_SECRET, ADMIN_TOKEN, DASHBOARD_SECRET");
    const text = await readFile(p.envFile, "utf8");
    expect(text).toMatch(/^NODE_SIGNING_SECRET="[0-9a-f]{64}"$/m);
    expect(text).toMatch(/^ADMIN_TOKEN="[0-9a-f]{64}"$/m);
    expect(text).toMatch(/^DASHBOARD_SECRET="[0-9a-f]{64}"$/m);
    expect((await stat(p.envFile)).mode & 0o777).toBe(0o600);
    // Generated secrets are written, never printed.
    for (const line of text.split("\n").filter((l) => l.includes("_SECRET=") || l.startsWith("ADMIN_TOKEN="))) {
      expect(result.output).not.toContain(line.slice(line.indexOf('"') + 1, -1));
    }
  });

  it("refuses a DASHBOARD_SECRET shorter than 32 characters, which serve would refuse at every start", async () => {
    const p = paths();
    const result = await gateway(cliArgs(p), { DASHBOARD_SECRET: "short" });
    expect(result.code).toBe(2);
    expect(result.output).toContain("DASHBOARD_SECRET must be at least 32 characters");
    expect(existsSync(p.envFile)).toBe(false);
  });

  it("writes nothing on a dry run and redacts the secrets it prints", async () => {
    const p = paths();
    const result = await gateway(cliArgs(p, ["--dry-run"]));
    expect(result.code, result.output).toBe(0);
    expect(existsSync(p.unit) || existsSync(p.envFile)).toBe(false);
    expect(result.output).toContain("Would write");
    expect(result.output).toContain('ADMIN_TOKEN="<redacted>"');
    expect(result.output).toContain('DATABASE_URL="postgres://gw:<redacted>@127.0.0.1:5432/gw"');
    for (const secret of Object.values(SECRETS)) expect(result.output).not.toContain(secret);
    expect(result.output).toContain('DASHBOARD_SECRET="<redacted>"');
  });

  it("stops with a usage error when the database or Redis URL is missing", async () => {
    const p = paths();
    const noDb = await gateway(cliArgs(p), { DATABASE_URL: "" });
    expect(noDb.code).toBe(2);
    expect(noDb.output).toContain("--database-url");
    const noRedis = await gateway(cliArgs(p), { REDIS_URL: "" });
    expect(noRedis.code).toBe(2);
    expect(noRedis.output).toContain("--redis-url");
  });

  it("passes systemd-analyze verify, as written by the CLI and with the default /var/lib data folder", async (ctx) => {
    if (!existsSync(SYSTEMD_ANALYZE)) {
      ctx.skip(`${SYSTEMD_ANALYZE} is not installed (Debian package systemd), so the unit cannot be verified here`);
      return;
    }
    const p = paths();
    const written = await gateway(cliArgs(p));
    expect(written.code, written.output).toBe(0);
    // The version this machine's systemd understands decides the back-off keys, as it does for the CLI.
    const defaults = join(dir, "defaults", "switchyard-gateway.service");
    await run("mkdir", ["-p", join(dir, "defaults")]);
    await writeFile(defaults, renderGatewayUnit(unitOptions({ user: null, systemdVersion: await detectSystemdVersion(), envFile: p.envFile })));
    for (const unit of [p.unit, defaults]) {
      const outcome = await run(SYSTEMD_ANALYZE, ["verify", unit]).then(
        ({ stdout, stderr }) => ({ code: 0, output: stdout + stderr }),
        (err: { code?: number; stdout?: string; stderr?: string }) => ({ code: err.code ?? -1, output: `${err.stdout ?? ""}${err.stderr ?? ""}` }),
      );
      // Unknown keys and bad values are only warnings (exit 0): no line may mention the unit.
      expect(outcome.output.split("\n").filter((line) => line.includes("switchyard-gateway")), unit).toEqual([]);
      expect(outcome.code, outcome.output).toBe(0);
    }
  });
});
