import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  DEFAULT_USER,
  ensureSystemUser,
  execCommand,
  installService,
  InstallServiceError,
  renderEnvFile,
  renderUnit,
  SERVICE_HELP,
  type ServiceOptions,
} from "../../backplane/src/ops/install-service.ts";

// `backplane install-service`: the unit and env file it writes, checked by systemd's own tools where present.

const run = promisify(execFile);
const SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze";

let dir = "";
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "sy-service-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function options(overrides: Partial<ServiceOptions> = {}): ServiceOptions {
  return {
    unitPath: join(dir, "systemd", "switchyard-backplane.service"),
    envFile: join(dir, "etc", "switchyard", "backplane.env"),
    workingDirectory: process.cwd(),
    execStart: execCommand([process.execPath, join(process.cwd(), "backplane/src/main.ts"), "start"]),
    user: null,
    memoryMax: "2G",
    readWritePaths: [join(dir, "state")],
    ...overrides,
  };
}

/**
 * systemd's EnvironmentFile= parser (src/basic/env-file.c, parse_env_file_internal), ported for the
 * states a generated file can reach: comments, KEY=, unquoted, single- and double-quoted values.
 */
function parseSystemdEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const trimmed = line.trimStart();
    if (trimmed === "" || trimmed.startsWith("#") || trimmed.startsWith(";")) continue;
    const eq = trimmed.indexOf("=");
    const key = trimmed.slice(0, eq).trimEnd();
    let value = "";
    let state: "pre" | "value" | "single" | "double" | "double_escape" | "escape" = "pre";
    for (const c of trimmed.slice(eq + 1)) {
      if (state === "pre") {
        if (c === "'") state = "single";
        else if (c === '"') state = "double";
        else if (c === "\\") state = "escape";
        else if (!/\s/.test(c)) {
          state = "value";
          value += c;
        }
      } else if (state === "value") {
        if (c === "\\") state = "escape";
        else value += c;
      } else if (state === "escape") {
        state = "value";
        value += c;
      } else if (state === "single") {
        if (c === "'") state = "pre";
        else value += c;
      } else if (state === "double") {
        if (c === '"') state = "pre";
        else if (c === "\\") state = "double_escape";
        else value += c;
      } else {
        state = "double";
        value += '"\\`$'.includes(c) ? c : `\\${c}`;
      }
    }
    out[key] = state === "value" ? value.trimEnd() : value;
  }
  return out;
}

const TRICKY = {
  BACKPLANE_NODE_ID: "gpu-1",
  BACKPLANE_SECRET: `s3cr3t with spaces "double" 'single' $HOME \${X} \`cmd\` back\\slash # not a comment`,
  BACKPLANE_ENGINES: "kind=vllm,url=http://127.0.0.1:8000,model=a b;kind=ollama,url=http://127.0.0.1:11434",
  BACKPLANE_EMPTY: "",
  BACKPLANE_TAB: "\tleading tab and trailing space ",
};

describe("install-service", () => {
  it("renders a unit with every hardening, restart and logging directive", () => {
    const unit = renderUnit(options({ user: "switchyard", memoryMax: "3G", drainGraceMs: 40_000, readWritePaths: ["/var/lib/switchyard", "/var/log/my app"] }));
    const lines = unit.split("\n");
    for (const directive of [
      "Restart=always",
      "RestartSec=5",
      "StandardOutput=journal",
      "StandardError=journal",
      "SyslogIdentifier=switchyard-backplane",
      `EnvironmentFile=${options().envFile}`,
      "NoNewPrivileges=true",
      "ProtectSystem=strict",
      "ProtectHome=true",
      "PrivateTmp=true",
      'ReadWritePaths=/var/lib/switchyard "/var/log/my app"',
      "MemoryMax=3G",
      "AmbientCapabilities=CAP_NET_BIND_SERVICE",
      "KillSignal=SIGTERM",
      "TimeoutStopSec=55",
      "After=network-online.target",
      "Wants=network-online.target",
      "WantedBy=multi-user.target",
      "User=switchyard",
      `WorkingDirectory=${process.cwd()}`,
      `ExecStart=${options().execStart}`,
    ]) {
      expect(lines, directive).toContain(directive);
    }
    expect(lines.filter((l) => l.startsWith("ReadWritePaths="))).toHaveLength(1);
    expect(renderUnit(options({ user: null }))).not.toMatch(/^User=/m);
    expect(renderUnit(options({ drainGraceMs: undefined }))).toContain("TimeoutStopSec=45");
    expect(renderUnit(options({ readWritePaths: [] }))).not.toContain("ReadWritePaths=");
  });

  it("escapes % specifiers and keeps a checkout under /home reachable", () => {
    const unit = renderUnit(options({ workingDirectory: "/home/ubuntu/switch%yard", execStart: execCommand(["/usr/bin/node", "/home/ubuntu/a b/main.ts", "$HOME"]) }));
    expect(unit).toContain("WorkingDirectory=/home/ubuntu/switch%%yard");
    expect(unit).toContain('ExecStart=/usr/bin/node "/home/ubuntu/a b/main.ts" $$HOME');
    expect(unit).toContain("ProtectHome=read-only");
  });

  it("rejects options systemd would misread", () => {
    expect(() => renderUnit(options({ workingDirectory: "relative/dir" }))).toThrow(/absolute path/);
    expect(() => renderUnit(options({ execStart: "/bin/true\nExecStartPre=/bin/evil" }))).toThrow(/one line/);
    expect(() => renderUnit(options({ memoryMax: "lots" }))).toThrow(/--memory-max/);
    expect(() => renderUnit(options({ user: "bad user" }))).toThrow(/--user/);
    expect(() => renderEnvFile({ "BAD-NAME": "x" })).toThrow(/valid variable name/);
    expect(() => renderEnvFile({ OK: "line\nbreak" })).toThrow(/control characters/);
  });

  it("writes the env file with mode 0600 in a 0700 folder, and values with spaces, quotes and $ survive systemd's and sh's parsing", async () => {
    const opts = options();
    const result = await installService({ ...opts, env: TRICKY });
    expect(result).toMatchObject({ unitPath: opts.unitPath, envFile: opts.envFile });
    expect((await stat(opts.envFile)).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, "etc", "switchyard"))).mode & 0o777).toBe(0o700);
    expect((await stat(opts.unitPath)).mode & 0o777).toBe(0o644);
    const text = await readFile(opts.envFile, "utf8");
    expect(parseSystemdEnvFile(text)).toEqual(TRICKY);

    const script = `set -a; . "$1"; set +a; node -e 'const k=process.argv.slice(1); console.log(JSON.stringify(Object.fromEntries(k.map((n)=>[n,process.env[n]]))))' ${Object.keys(TRICKY).join(" ")}`;
    const { stdout } = await run("/bin/sh", ["-c", script, "sh", opts.envFile], { env: { PATH: `${join(process.execPath, "..")}:/usr/bin:/bin` } });
    expect(JSON.parse(stdout)).toEqual(TRICKY);
    expect(await readFile(opts.unitPath, "utf8")).toBe(result.preview.unit);
  });

  it("refuses to overwrite an existing unit or env file unless forced", async () => {
    const opts = options();
    await installService({ ...opts, env: { BACKPLANE_NODE_ID: "gpu-1" } });
    await writeFile(opts.envFile, "KEEP=me\n");
    const error = await installService({ ...opts, env: { BACKPLANE_NODE_ID: "gpu-2" } }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(InstallServiceError);
    expect((error as InstallServiceError).code).toBe("file_exists");
    expect((error as Error).message).toContain("--force");
    expect(await readFile(opts.envFile, "utf8")).toBe("KEEP=me\n");

    await installService({ ...opts, env: { BACKPLANE_NODE_ID: "gpu-2" }, force: true });
    expect(parseSystemdEnvFile(await readFile(opts.envFile, "utf8"))).toEqual({ BACKPLANE_NODE_ID: "gpu-2" });
    expect((await stat(opts.envFile)).mode & 0o777).toBe(0o600);
  });

  it("writes nothing on a dry run, returns the start commands, and redacts secrets in the preview", async () => {
    const opts = options();
    const result = await installService({ ...opts, env: { ...TRICKY, BACKPLANE_ENGINES: "kind=vllm,url=http://127.0.0.1:8000,api-key=sk-engine" }, dryRun: true });
    expect(existsSync(opts.unitPath) || existsSync(opts.envFile)).toBe(false);
    expect(result.commands).toEqual(["systemctl daemon-reload", "systemctl enable --now switchyard-backplane", "journalctl -u switchyard-backplane -f"]);
    expect(result.preview.unit).toContain("SyslogIdentifier=switchyard-backplane");
    expect(result.preview.envFile).not.toContain("s3cr3t");
    expect(result.preview.envFile).not.toContain("sk-engine");
    expect(parseSystemdEnvFile(result.preview.envFile)).toMatchObject({ BACKPLANE_SECRET: "<redacted>", BACKPLANE_NODE_ID: "gpu-1" });
  });

  it("takes TimeoutStopSec from BACKPLANE_DRAIN_GRACE_MS in the env when no grace is given", async () => {
    const result = await installService({ ...options(), env: { BACKPLANE_DRAIN_GRACE_MS: "120000" }, dryRun: true });
    expect(result.preview.unit).toContain("TimeoutStopSec=135");
  });

  it("warns when the checkout is under /tmp or /home, which PrivateTmp and ProtectHome hide or make read-only", async () => {
    const inTmp = await installService({ ...options({ workingDirectory: "/tmp/switchyard", readWritePaths: [] }), env: {}, dryRun: true });
    expect(inTmp.warnings).toEqual([expect.stringContaining("PrivateTmp=true")]);
    const inHome = await installService({ ...options({ workingDirectory: "/home/ubuntu/switchyard", readWritePaths: [] }), env: {}, dryRun: true });
    expect(inHome.warnings).toEqual([expect.stringContaining("ProtectHome")]);
    const inOpt = await installService({ ...options({ workingDirectory: "/opt/switchyard", readWritePaths: [] }), env: {}, dryRun: true });
    expect(inOpt.warnings).toEqual([]);
  });

  it("refuses a TLS certificate or key that does not exist, naming the setting and the file, and writes nothing", async () => {
    const opts = options();
    const cert = join(dir, "cert.pem");
    await writeFile(cert, "-----BEGIN CERTIFICATE-----\n");
    const missingKey = join(dir, "missing-key.pem");
    const error = await installService({ ...opts, env: { BACKPLANE_TLS_CERT: cert, BACKPLANE_TLS_KEY: missingKey } }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(InstallServiceError);
    expect((error as Error).message).toContain("--tls-key");
    expect((error as Error).message).toContain(missingKey);
    await expect(stat(opts.unitPath)).rejects.toThrow();
    await expect(stat(opts.envFile)).rejects.toThrow();
  });

  it("runs as the dedicated switchyard user by default and makes sure the user exists before writing", async () => {
    expect(SERVICE_HELP).toContain(`default: ${DEFAULT_USER}`);
    expect(DEFAULT_USER).toBe("switchyard");
    const asked: string[] = [];
    const opts = options({ user: DEFAULT_USER });
    const ensureUser = (name: string) => {
      asked.push(name);
      return Promise.resolve();
    };
    const result = await installService({ ...opts, env: {}, ensureUser });
    expect(asked).toEqual(["switchyard"]);
    expect(result.preview.unit).toMatch(/^User=switchyard$/m);
    // The real check finds an existing user without trying to create it.
    expect(await ensureSystemUser("root")).toBe("exists");
  });

  it("documents every flag in the help text", () => {
    for (const flag of ["--unit-path", "--environment-file", "--user", "--memory-max", "--force", "--dry-run"]) expect(SERVICE_HELP).toContain(flag);
    expect(SERVICE_HELP).toContain("/etc/systemd/system/switchyard-backplane.service");
    expect(SERVICE_HELP).toContain("/etc/switchyard/backplane.env");
    expect(SERVICE_HELP).toContain("default 2G");
  });

  it("passes systemd-analyze verify without complaints about its directives", async (ctx) => {
    if (!existsSync(SYSTEMD_ANALYZE)) {
      ctx.skip(`${SYSTEMD_ANALYZE} is not installed here, so the unit cannot be verified`);
      return;
    }
    const opts = options({ user: null, readWritePaths: [dir] });
    await installService({ ...opts, env: TRICKY });
    const outcome = await run(SYSTEMD_ANALYZE, ["verify", opts.unitPath]).then(
      ({ stdout, stderr }) => ({ code: 0, output: stdout + stderr }),
      (err: { code?: number; stdout?: string; stderr?: string }) => ({ code: err.code ?? -1, output: `${err.stdout ?? ""}${err.stderr ?? ""}` }),
    );
    // Unknown keys and unparsable values are only warnings (exit 0): look for any line about our unit.
    const aboutUnit = outcome.output.split("\n").filter((line) => line.includes("switchyard-backplane"));
    expect(aboutUnit).toEqual([]);
    expect(outcome.code).toBe(0);
  });
});
