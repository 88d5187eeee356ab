import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { freePort } from "../../dev/ports.ts";
import { TEST_SECRET } from "../support/backplane-harness.ts";

const run = promisify(execFile);
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

async function backplane(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ["backplane/src/main.ts", ...args], { env: { ...process.env, ...env }, timeout: 20_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const base = ["--node-id", "gpu-1", "--region", "eu-1", "--secret", TEST_SECRET];

describe("backplane CLI", () => {
  it("has --help on every command", async () => {
    for (const command of ["start", "sim", "doctor", "install-service"]) {
      const res = await backplane([command, "--help"]);
      expect(res.code).toBe(0);
      expect(res.stdout).toContain("Usage:");
    }
    expect((await backplane(["start", "--help"])).stdout).toContain("BACKPLANE_DRAIN_GRACE_MS");
  });

  it("stops with a message naming the setting when the config is invalid", async () => {
    const res = await backplane(["start", ...base, "--engine", "kind=vllm,url=http://127.0.0.1:1", "--port", "70000"]);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain("Invalid backplane setting --port / BACKPLANE_PORT");
  });

  it("doctor reports an unreachable engine with the fix, and exits 1", async () => {
    const port = await freePort();
    const res = await backplane(["doctor", ...base, "--engine", `kind=vllm,url=http://127.0.0.1:${port}`, "--nvidia-smi", "/nonexistent"]);
    expect(res.code).toBe(1);
    expect(res.stdout).toMatch(/engine vllm-0/);
    expect(res.stdout.toLowerCase()).toContain("fail");
    expect(res.stdout).toMatch(/gateway/i);
  });

  it("install-service writes the unit and a 0600 env file holding the settings, and prints how to enable it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sy-unit-"));
    dirs.push(dir);
    const unitPath = join(dir, "switchyard-backplane.service");
    const envFile = join(dir, "etc", "backplane.env");
    const res = await backplane(["install-service", ...base, "--engine", "kind=vllm,url=http://127.0.0.1:8000", "--unit-path", unitPath, "--environment-file", envFile]);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain("systemctl enable --now switchyard-backplane");
    const unit = readFileSync(unitPath, "utf8");
    expect(unit).toContain(`EnvironmentFile=${envFile}`);
    expect(unit).toContain("Restart=always");
    expect(unit).toMatch(/ExecStart=.*backplane\/src\/main\.ts start/);
    expect(statSync(envFile).mode & 0o777).toBe(0o600);
    const env = readFileSync(envFile, "utf8");
    expect(env).toContain('BACKPLANE_NODE_ID="gpu-1"');
    expect(env).toContain(`BACKPLANE_SECRET="${TEST_SECRET}"`);
    expect(env).toContain('BACKPLANE_ENGINES="kind=vllm,url=http://127.0.0.1:8000"');
    // Run again: it does not overwrite without --force.
    const again = await backplane(["install-service", ...base, "--engine", "kind=vllm,url=http://127.0.0.1:8000", "--unit-path", unitPath, "--environment-file", envFile]);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/exists|--force/);
  });
});
