import { spawn } from "node:child_process";
import { BackupError } from "./errors.ts";

/** What a finished tool printed. */
export interface ToolOutput {
  stdout: string;
  stderr: string;
}

/** How to run one external tool. */
export interface ToolRun {
  /** Shown in messages: "pg_dump", "pg_restore --list". */
  what: string;
  env: NodeJS.ProcessEnv;
  /** The deadline: past it the process gets SIGTERM, then SIGKILL. */
  timeoutMs: number;
  /** Applied to every message built from the tool's output (it may echo a connection string). */
  redact: (text: string) => string;
  /** What to say when the executable does not exist. */
  missingHint: string;
}

/** Kept of stderr for the error message: the end, where the reason is. */
const STDERR_TAIL = 8_000;
/** Grace between SIGTERM and SIGKILL once the deadline passed. */
const KILL_GRACE_MS = 5_000;

/** Runs `file args`, resolving with its output on exit code 0 and rejecting with a BackupError otherwise. */
export function runTool(file: string, args: readonly string[], run: ToolRun): Promise<ToolOutput> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env: run.env, stdio: ["ignore", "pipe", "pipe"] });
    const stdout: Buffer[] = [];
    let stderr = "";
    let timedOut = false;
    let killer: NodeJS.Timeout | undefined;
    const deadline = setTimeout(() => {
      timedOut = true;
      child.kill("SIGTERM");
      killer = setTimeout(() => child.kill("SIGKILL"), KILL_GRACE_MS);
    }, run.timeoutMs);
    child.stdout.on("data", (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString("utf8")).slice(-STDERR_TAIL);
    });
    child.on("error", (err: NodeJS.ErrnoException) => {
      clearTimeout(deadline);
      clearTimeout(killer);
      if (err.code === "ENOENT") reject(new BackupError("missing_tool", `${file} was not found. ${run.missingHint}`));
      else reject(new BackupError("tool_failed", run.redact(`${run.what} could not be started: ${err.message}`)));
    });
    child.on("close", (code, signal) => {
      clearTimeout(deadline);
      clearTimeout(killer);
      const out = { stdout: Buffer.concat(stdout).toString("utf8"), stderr };
      if (timedOut) {
        reject(new BackupError("timeout", `${run.what} did not finish within ${formatDuration(run.timeoutMs)} and was stopped; raise --timeout-minutes if the database is that large.`));
      } else if (code === 0) {
        resolve(out);
      } else {
        const reason = stderr.trim() === "" ? `no output (${signal === null ? `exit code ${String(code)}` : `signal ${signal}`})` : stderr.trim();
        reject(new BackupError("tool_failed", run.redact(`${run.what} failed: ${reason}`)));
      }
    });
  });
}

function formatDuration(ms: number): string {
  if (ms % 60_000 === 0) return `${ms / 60_000} min`;
  return ms < 1_000 ? `${ms} ms` : `${Math.round(ms / 1_000)} s`;
}
