import { spawn, type ChildProcess } from "node:child_process";

/** A child process of the local stack, with its output prefixed and kept for error reports. */
export interface Child {
  readonly name: string;
  readonly process: ChildProcess;
  alive(): boolean;
  /** The last lines it printed (for error messages). */
  recentOutput(): string;
  stop(): Promise<void>;
}

/** Starts `node <args>` with Node 24 (the binary running this script), or `command <args>`, and prefixes its output. */
export function startChild(
  name: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd: string; echo: boolean; command?: string },
): Child {
  const child = spawn(opts.command ?? process.execPath, args, {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  const onData = (chunk: Buffer) => {
    for (const line of chunk.toString("utf8").split("\n")) {
      if (line.trim() === "") continue;
      lines.push(line);
      if (lines.length > 50) lines.shift();
      if (opts.echo) process.stdout.write(`[${name}] ${line}\n`);
    }
  };
  child.stdout?.on("data", onData);
  child.stderr?.on("data", onData);
  let exited = false;
  const exit = new Promise<void>((resolve) => child.once("exit", () => {
    exited = true;
    resolve();
  }));
  let stopping: Promise<void> | null = null;
  return {
    name,
    process: child,
    alive: () => !exited,
    recentOutput: () => lines.join("\n"),
    stop: () =>
      (stopping ??= (async () => {
        if (exited) return;
        child.kill("SIGTERM");
        const killer = setTimeout(() => child.kill("SIGKILL"), 5_000);
        await exit;
        clearTimeout(killer);
      })()),
  };
}
