/**
 * The control host's `sky` runner (worker/cli/sky.ts) against small `sky` scripts: found on PATH or
 * not, the task file private and gone after the call, and a call that hangs stopped at its timeout
 * with everything it started.
 */
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { findSky, skyCli } from "../../worker/cli/sky.ts";
import { processAlive } from "../support/process-alive.ts";

const dirs: string[] = [];

afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A folder with an executable `sky` running `body` (sh). */
function fakeSky(body: string): { dir: string; path: string } {
  const dir = mkdtempSync(join(tmpdir(), "switchyard-sky-test-"));
  dirs.push(dir);
  const path = join(dir, "sky");
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return { dir, path };
}


describe("the sky runner", () => {
  it("finds an executable sky on PATH, and nothing where there is none", () => {
    const { dir, path } = fakeSky("exit 0");
    const empty = mkdtempSync(join(tmpdir(), "switchyard-sky-none-"));
    dirs.push(empty);
    expect(findSky([empty, dir].join(delimiter))).toBe(path);
    expect(findSky(empty)).toBeNull();
    expect(findSky(undefined)).toBeNull();
  });

  it("hands sky launch the task in a file only its owner can read, and deletes it after", async () => {
    const { dir, path } = fakeSky(`printf '%s\\n' "$@" > "${"$"}{OUT}/args"; stat -c %a "$6" > "${"$"}{OUT}/mode"; cp "$6" "${"$"}{OUT}/task"; echo launched`);
    const sky = skyCli(path, { cwd: dir, env: { ...process.env, OUT: dir } });
    const result = await sky.launch("sky-us-east-1-0000abcd", "name: sky-us-east-1-0000abcd\nsecrets:\n  BACKPLANE_SECRET: s\n");
    expect(result).toMatchObject({ ok: true, code: 0, timedOut: false, output: "launched" });
    const args = readFileSync(join(dir, "args"), "utf8").trim().split("\n");
    expect(args.slice(0, 5)).toEqual(["launch", "-y", "-d", "-c", "sky-us-east-1-0000abcd"]);
    expect(readFileSync(join(dir, "mode"), "utf8").trim()).toBe("600");
    expect(readFileSync(join(dir, "task"), "utf8")).toContain("BACKPLANE_SECRET: s");
    expect(existsSync(args[5] ?? "")).toBe(false);
  });

  it("reports a failing call with the end of its output", async () => {
    const { dir, path } = fakeSky("echo 'sky.exceptions.ResourcesUnavailableError: no capacity' >&2; exit 3");
    const result = await skyCli(path, { cwd: dir, env: process.env }).down("c1");
    expect(result).toMatchObject({ ok: false, code: 3, timedOut: false });
    expect(result.output).toContain("ResourcesUnavailableError");
  });

  it("stops a call that hangs at its timeout, with the processes it started", async () => {
    const { dir, path } = fakeSky(`sleep 60 & echo $! > "${"$"}{OUT}/child"; wait`);
    const started = Date.now();
    const result = await skyCli(path, { cwd: dir, env: { ...process.env, OUT: dir }, timeoutsMs: { status: 500 } }).status();
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(result).toMatchObject({ ok: false, timedOut: true });
    expect(result.output).toContain("did not finish within");
    const child = Number(readFileSync(join(dir, "child"), "utf8"));
    await new Promise((r) => setTimeout(r, 200));
    expect(processAlive(child)).toBe(false);
  });
});
