/**
 * The `sky` CLI (SkyPilot, https://docs.skypilot.co/en/latest/reference/cli.html) as the control
 * host's provisioner calls it: every call has a timeout (the whole process group is killed past it),
 * and only the tail of its output is kept for the error a failed launch reports.
 */
import { spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";

/** Timeouts of the sky calls: provisioning plus setup (pip install vllm) can take long. */
export const SKY_TIMEOUTS_MS = { launch: 45 * 60_000, down: 20 * 60_000, status: 2 * 60_000 };
/** Output kept per call (the end of it: where sky says what went wrong). */
const TAIL_CHARS = 4_000;

/** What one sky call ended with. */
export interface SkyResult {
  ok: boolean;
  code: number | null;
  timedOut: boolean;
  /** The last TAIL_CHARS of stdout and stderr together. */
  output: string;
}

/** The sky CLI of this host. */
export interface SkyCli {
  /** Absolute path of the executable. */
  readonly path: string;
  /** `sky launch -y -d -c <cluster> <file>` with the YAML in a 0600 temporary file (deleted after). */
  launch(cluster: string, taskYaml: string): Promise<SkyResult>;
  /** `sky down -y <cluster>`. */
  down(cluster: string): Promise<SkyResult>;
  /** `sky status`. */
  status(): Promise<SkyResult>;
}

/** The first executable `sky` on PATH, or null. */
export function findSky(pathEnv: string | undefined): string | null {
  for (const dir of (pathEnv ?? "").split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, "sky");
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not here.
    }
  }
  return null;
}

/** Runs the executable with a timeout; never rejects. */
function run(path: string, args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number }): Promise<SkyResult> {
  return new Promise((resolve) => {
    let output = "";
    let timedOut = false;
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString("utf8")).slice(-TAIL_CHARS);
    };
    // Its own process group, so a timeout also ends what sky started (ssh, rsync, provisioners).
    const child = spawn(path, args, { cwd: opts.cwd, env: opts.env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    const kill = (signal: NodeJS.Signals) => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, signal);
      } catch {
        // Already gone.
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill("SIGTERM");
      setTimeout(() => kill("SIGKILL"), 5_000).unref();
    }, opts.timeoutMs);
    child.once("error", (err) => {
      clearTimeout(timer);
      resolve({ ok: false, code: null, timedOut, output: `${output}\n${err.message}`.trim() });
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      const note = timedOut ? `\n(sky ${args[0] ?? ""} did not finish within ${Math.round(opts.timeoutMs / 1000)} s and was stopped)` : "";
      resolve({ ok: code === 0 && !timedOut, code, timedOut, output: (output + note).trim() });
    });
  });
}

/**
 * A sky CLI at `path`, run in `cwd` (the repository checkout: the task's `workdir: .` is synced
 * from there) with `env`.
 */
export function skyCli(path: string, opts: { cwd: string; env: NodeJS.ProcessEnv; timeoutsMs?: Partial<typeof SKY_TIMEOUTS_MS> }): SkyCli {
  const timeouts = { ...SKY_TIMEOUTS_MS, ...opts.timeoutsMs };
  const base = { cwd: opts.cwd, env: opts.env };
  return {
    path,
    async launch(cluster, taskYaml) {
      const dir = await mkdtemp(join(tmpdir(), "switchyard-sky-"));
      try {
        const file = join(dir, `${cluster}.yaml`);
        // The YAML holds the node's secret: readable by this user only, deleted once sky has read it.
        await writeFile(file, taskYaml, { mode: 0o600 });
        // -d: return once the job is submitted (the run, vLLM and the backplane, never ends).
        return await run(path, ["launch", "-y", "-d", "-c", cluster, file], { ...base, timeoutMs: timeouts.launch });
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
    down: (cluster) => run(path, ["down", "-y", cluster], { ...base, timeoutMs: timeouts.down }),
    status: () => run(path, ["status"], { ...base, timeoutMs: timeouts.status }),
  };
}
