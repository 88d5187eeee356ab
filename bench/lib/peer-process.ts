/**
 * Child processes of the benchmark's peers (nginx, Portkey, the Node forwarder) and the tools it
 * drives (wrk): finding a binary, starting it with its output kept for error messages, waiting for
 * its port, and stopping it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { connect } from "node:net";
import { delimiter, join } from "node:path";

/** The first executable `name` in `dirs`, then on PATH; null when there is none. */
export function findExecutable(name: string, dirs: string[] = []): string | null {
  const path = process.env.PATH ?? "";
  for (const dir of [...dirs, ...path.split(delimiter).filter((d) => d !== "")]) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

/** A started child process. */
export interface PeerProcess {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  alive(): boolean;
  /** Resolves when it has exited. */
  readonly exited: Promise<void>;
  /** The last lines it printed on stdout and stderr. */
  recentOutput(): string;
  /** Calls `listener` with every line it prints on stdout. */
  onLine(listener: (line: string) => void): void;
  /** SIGTERM, SIGKILL after 5 s; resolves when it has exited. Safe to call twice. */
  stop(): Promise<void>;
}

/** Starts `command args` with stdout and stderr piped and kept (the last 50 lines). */
export function startProcess(name: string, command: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): PeerProcess {
  const child = spawn(command, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ["ignore", "pipe", "pipe"] });
  const lines: string[] = [];
  const listeners: ((line: string) => void)[] = [];
  const keep = (stdout: boolean) => {
    let partial = "";
    return (chunk: Buffer) => {
      const parts = (partial + chunk.toString("utf8")).split("\n");
      partial = parts.pop() ?? "";
      for (const line of parts) {
        if (line.trim() === "") continue;
        lines.push(line);
        if (lines.length > 50) lines.shift();
        if (stdout) for (const listener of listeners) listener(line);
      }
    };
  };
  child.stdout.on("data", keep(true));
  child.stderr.on("data", keep(false));
  let done = false;
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => {
      done = true;
      resolve();
    });
    // A binary that cannot be started emits "error" and no "exit".
    child.once("error", (err) => {
      lines.push(`failed to start ${command}: ${err.message}`);
      done = true;
      resolve();
    });
  });
  let stopping: Promise<void> | null = null;
  return {
    name,
    pid: child.pid ?? -1,
    child,
    alive: () => !done,
    exited,
    recentOutput: () => lines.join("\n"),
    onLine: (listener) => void listeners.push(listener),
    stop: () =>
      (stopping ??= (async () => {
        if (done) return;
        child.kill("SIGTERM");
        const killer = setTimeout(() => child.kill("SIGKILL"), 5_000);
        await exited;
        clearTimeout(killer);
      })()),
  };
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.setTimeout(1_000);
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
    socket.once("timeout", () => done(false));
  });
}

/** Polls until `host:port` accepts TCP connections; fails when `proc` exits first or after `timeoutMs`. */
export async function waitForPort(proc: PeerProcess, host: string, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await canConnect(host, port))) {
    if (!proc.alive()) throw new Error(`${proc.name} exited before it listened on ${host}:${port}\n${proc.name} output:\n${proc.recentOutput()}`);
    if (Date.now() > deadline) throw new Error(`${proc.name} did not listen on ${host}:${port} within ${timeoutMs} ms\n${proc.name} output:\n${proc.recentOutput()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** `http://host:port`, with brackets around an IPv6 address. */
export function httpUrl(host: string, port: number): string {
  return `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
}
