/**
 * Puts the fake `sky` (fake-sky.ts) on a PATH for tests: a temporary folder with an executable `sky`
 * shell wrapper that execs the repository's Node on fake-sky.ts, its call log and its cluster state.
 * `close()` kills every process a fake launch started (so none outlives the test) and removes it all.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join, resolve } from "node:path";
import type { FakeCluster } from "./fake-sky.ts";
import { processAlive } from "./process-alive.ts";

const ROOT = resolve(import.meta.dirname, "../..");

/** One recorded call of the fake. */
export interface SkyCall {
  args: string[];
  cwd: string;
  at: string;
}

/** A fake sky installed in a temporary folder. */
export interface FakeSky {
  /** The folder holding `sky`: put it first on PATH. */
  binDir: string;
  /** Env for a process that should find the fake: PATH with binDir first, and the fake's own settings. */
  env(extra?: Record<string, string>): Record<string, string>;
  /** The calls so far, oldest first. */
  calls(): SkyCall[];
  /** The tasks the fake was asked to launch (as parsed from their YAML), oldest first. */
  tasks(): { cluster: string; task: Record<string, unknown> }[];
  /** The clusters up now. */
  clusters(): FakeCluster[];
  close(): Promise<void>;
}


/** Installs the fake; `opts.heartbeatMs` shortens the backplanes' heartbeat interval. */
export function installFakeSky(opts: { heartbeatMs?: number } = {}): FakeSky {
  const dir = mkdtempSync(join(tmpdir(), "switchyard-fake-sky-"));
  const binDir = join(dir, "bin");
  const stateDir = join(dir, "state");
  const log = join(dir, "calls.jsonl");
  mkdirSync(binDir);
  mkdirSync(stateDir);
  const wrapper = join(binDir, "sky");
  writeFileSync(wrapper, `#!/bin/sh\nexec "${join(ROOT, "node_modules", ".bin", "node")}" "${join(ROOT, "tests", "support", "fake-sky.ts")}" "$@"\n`);
  chmodSync(wrapper, 0o755);
  const lines = () => (existsSync(log) ? readFileSync(log, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) : []);
  const clusters = () =>
    existsSync(stateDir) ? readdirSync(stateDir).filter((f) => f.endsWith(".json")).map((f) => JSON.parse(readFileSync(join(stateDir, f), "utf8")) as FakeCluster) : [];
  return {
    binDir,
    env: (extra = {}) => ({
      PATH: `${binDir}${delimiter}${process.env.PATH ?? ""}`,
      FAKE_SKY_LOG: log,
      FAKE_SKY_STATE: stateDir,
      ...(opts.heartbeatMs ? { FAKE_SKY_HEARTBEAT_MS: String(opts.heartbeatMs) } : {}),
      ...extra,
    }),
    calls: () => lines().filter((l) => Array.isArray(l.args)) as unknown as SkyCall[],
    tasks: () => lines().filter((l) => l.event === "task") as unknown as { cluster: string; task: Record<string, unknown> }[],
    clusters,
    async close() {
      const pids = clusters().flatMap((c) => c.pids);
      for (const pid of pids) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // Gone already.
        }
      }
      const deadline = Date.now() + 5_000;
      while (pids.some(processAlive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
