/**
 * Workers under plain `workerd`: bundled the way `wrangler deploy` bundles (bundle.ts) and served
 * from a generated Cap'n Proto config that carries the bindings. Used by `npm run serve` (the
 * self-hosted gateway) and by the benchmark, which measures the worker without `wrangler dev`'s
 * proxy hop and Node process.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, openSync, readSync, statSync } from "node:fs";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { createInterface } from "node:readline";
import { Readable } from "node:stream";
import type { DurableObjectBinding, WorkerModule } from "./bundle.ts";
import { SCHEDULER_MODULE, schedulerModule } from "./scheduler-module.ts";

/** The workerd binary npm installed (the `workerd` package, or its platform package). */
export function workerdBinary(): string {
  const require = createRequire(import.meta.url);
  const candidates: string[] = [];
  for (const pkg of ["workerd/package.json", `@cloudflare/workerd-${process.platform}-${process.arch === "x64" ? "64" : process.arch}/package.json`]) {
    try {
      candidates.push(join(dirname(require.resolve(pkg)), "bin/workerd"));
    } catch {
      // not installed under this name
    }
  }
  const found = candidates.find((path) => existsSync(path));
  if (!found) throw new Error("workerd is not installed (npm package `workerd`, a dependency of wrangler); run npm install");
  return found;
}

/** A Cap'n Proto text literal (C-style escapes; other characters as UTF-8). */
function capnpText(value: string): string {
  let out = "";
  for (const ch of value) {
    const code = ch.codePointAt(0) ?? 0;
    if (ch === '"' || ch === "\\") out += `\\${ch}`;
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, "0")}`;
    else out += ch;
  }
  return `"${out}"`;
}

/** Options of `startWorkerd`. */
export interface WorkerdOptions {
  /** Service name (in workerd's logs). */
  name: string;
  /** The main module first (a `WorkerBundle`'s `modules`). */
  modules: WorkerModule[];
  /** Text bindings: every var and secret. The config file holding them is written with mode 0600. */
  bindings: Record<string, string>;
  /**
   * Durable Object namespaces of the worker's own classes, bound under their names (a
   * `WorkerConfig`'s `durableObjects`).
   */
  durableObjects?: DurableObjectBinding[];
  /**
   * Folder of the Durable Objects' storage (workerd's `localDisk`: one SQLite file per object,
   * kept across restarts). Default: in memory, for the life of the process.
   */
  durableObjectDir?: string;
  compatibilityDate: string;
  compatibilityFlags?: string[];
  host?: string;
  /** 0 (default) lets the OS pick; the port is read back from workerd's control channel. */
  port?: number;
  /**
   * Also listen on a second loopback port where `runScheduled(cron)` makes workerd dispatch a
   * scheduled event to the worker (workerd runs no Cron Triggers by itself). Requests there need a
   * random bearer token only this process knows.
   */
  scheduled?: boolean;
  /** Folder for the config (and the log); default a temp folder removed by `close()`. */
  dir?: string;
  /**
   * Where the worker's console goes: `file` (default: `logPath`, read with `recentOutput`) or
   * `inherit` (this process's stdout and stderr, e.g. the journal under systemd).
   */
  output?: "file" | "inherit";
  /** `--experimental` (only for experimental compatibility flags or config features). */
  experimental?: boolean;
  startTimeoutMs?: number;
  /** How long `close()` lets workerd finish its requests after SIGTERM before SIGKILL (default 5000). */
  stopTimeoutMs?: number;
  /**
   * A header (e.g. "X-Forwarded-Proto") by which a TLS-terminating proxy in front says the client's
   * scheme; the request URL the worker sees then starts with https:// (workerd's `forwardedProtoHeader`).
   */
  forwardedProtoHeader?: string;
}

/** What a scheduled event ended with, as workerd reports it (`Fetcher.scheduled`). */
export interface ScheduledResult {
  outcome: string;
  noRetry: boolean;
}

/** A running workerd. */
export interface Workerd {
  /** `http://host:port` of the worker. */
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Config written for it, and the file its stdout and stderr (the worker's console) go to with `output: "file"`. */
  readonly configPath: string;
  readonly logPath: string;
  /** Resolves when the process has exited, with its code (null when a signal ended it) and signal. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  alive(): boolean;
  /** The last `bytes` of its output (empty with `output: "inherit"`). */
  recentOutput(bytes?: number): string;
  /**
   * Dispatches a scheduled event with this cron string (needs `scheduled: true`) and resolves once
   * the handler and its `waitUntil` work are done; rejects when workerd reports another outcome than "ok".
   */
  runScheduled(cron?: string, scheduledTime?: Date): Promise<ScheduledResult>;
  /** SIGTERM (SIGKILL after `stopTimeoutMs`); removes the temp folder it made. Safe to call twice. */
  close(): Promise<void>;
}

function configText(opts: WorkerdOptions, dir: string, modules: WorkerModule[], host: string, port: number): string {
  const moduleLines = modules.map((m) => {
    // embed paths are relative to the config file (absolute ones would be searched in import paths).
    const embed = `embed ${capnpText(relative(dir, m.path))}`;
    return `      (name = ${capnpText(m.name)}, ${m.type} = ${embed}),`;
  });
  const bindingLines = Object.entries(opts.bindings).map(([name, value]) => `      (name = ${capnpText(name)}, text = ${capnpText(value)}),`);
  const objects = opts.durableObjects ?? [];
  for (const o of objects) bindingLines.push(`      (name = ${capnpText(o.binding)}, durableObjectNamespace = ${capnpText(o.className)}),`);
  // One namespace per class (two bindings may name the same class). On local disk the unique key
  // names the objects' folder, so it must stay the same across restarts and releases.
  const classes = [...new Map(objects.map((o) => [o.className, o])).values()];
  const namespaceLines = classes.map((o) => `    (className = ${capnpText(o.className)}, uniqueKey = ${capnpText(`${opts.name}-${o.className}`)}${o.sql ? ", enableSql = true" : ""}),`);
  const storageKind = opts.durableObjectDir === undefined ? "inMemory = void" : `localDisk = "durable-objects"`;
  const storage = classes.length === 0 ? "" : `  durableObjectNamespaces = [\n${namespaceLines.join("\n")}\n  ],\n  durableObjectStorage = (${storageKind}),\n`;
  const flags = (opts.compatibilityFlags ?? []).map(capnpText).join(", ");
  const address = (p: number) => capnpText(`${host.includes(":") ? `[${host}]` : host}:${p}`);
  const services = [
    `    (name = "worker", worker = .worker),`,
    "    # The worker reaches local servers (backplanes, the Upstash-REST adapter, the Neon pipe) on",
    `    # loopback; workerd's default "internet" service allows public addresses only.`,
    `    (name = "network", network = (allow = ["public", "private", "local"])),`,
  ];
  if (opts.durableObjectDir !== undefined) services.push(`    (name = "durable-objects", disk = (path = ${capnpText(resolve(opts.durableObjectDir))}, writable = true)),`);
  const httpOptions = opts.forwardedProtoHeader === undefined ? "" : `forwardedProtoHeader = ${capnpText(opts.forwardedProtoHeader)}`;
  const sockets = [`    (name = "http", address = ${address(port)}, http = (${httpOptions}), service = "worker"),`];
  if (opts.scheduled) {
    // Loopback only, whatever `host` is: the token is the lock, loopback the fence.
    sockets.push(`    (name = "scheduled", address = "127.0.0.1:0", http = (), service = (name = "worker", entrypoint = "scheduler")),`);
  }
  return `# Generated by worker/selfhost/workerd.ts for ${opts.name}. Holds the worker's secrets: keep it private.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
${services.join("\n")}
  ],
  sockets = [
${sockets.join("\n")}
  ],
);

const worker :Workerd.Worker = (
  modules = [
${moduleLines.join("\n")}
  ],
  compatibilityDate = ${capnpText(opts.compatibilityDate)},
  compatibilityFlags = [${flags}],
  bindings = [
${bindingLines.join("\n")}
  ],
${storage}  globalOutbound = "network",
);
`;
}

function tail(path: string, bytes: number): string {
  try {
    const size = statSync(path).size;
    const length = Math.min(size, bytes);
    const buf = Buffer.alloc(length);
    const fd = openSync(path, "r");
    try {
      readSync(fd, buf, 0, length, size - length);
    } finally {
      closeSync(fd);
    }
    return buf.toString("utf8");
  } catch {
    return "";
  }
}

/**
 * Writes a workerd config for the modules and bindings and starts `workerd serve` on it; resolves
 * once every socket listens (workerd reports it on `--control-fd`, which also gives the port when
 * port 0 was asked for). The worker's console goes to `logPath`, not through this process.
 */
export async function startWorkerd(opts: WorkerdOptions): Promise<Workerd> {
  const main = opts.modules[0];
  if (!main) throw new Error("startWorkerd: no modules");
  const ownsDir = opts.dir === undefined;
  const dir = resolve(opts.dir ?? (await mkdtemp(join(tmpdir(), "sy-workerd-"))));
  // The config holds every secret binding: a private folder, a private file.
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (opts.durableObjectDir !== undefined) await mkdir(opts.durableObjectDir, { recursive: true, mode: 0o700 });
  const host = opts.host ?? "127.0.0.1";
  const schedulerToken = opts.scheduled ? randomBytes(32).toString("hex") : null;
  let modules = opts.modules;
  if (schedulerToken !== null) {
    const path = join(dir, SCHEDULER_MODULE);
    await writeFile(path, schedulerModule(main.name, schedulerToken), { mode: 0o600 });
    await chmod(path, 0o600);
    modules = [{ name: SCHEDULER_MODULE, path, type: "esModule" }, ...opts.modules];
  }
  const configPath = join(dir, "workerd.capnp");
  const logPath = join(dir, "workerd.log");
  await writeFile(configPath, configText(opts, dir, modules, host, opts.port ?? 0), { mode: 0o600 });
  await chmod(configPath, 0o600);

  const inherit = opts.output === "inherit";
  const log = inherit ? null : openSync(logPath, "a");
  // BENCH_WORKERD_INSPECTOR=host:port opens V8's inspector (CPU profiles of the worker; bench/README.md).
  const inspector = process.env.BENCH_WORKERD_INSPECTOR;
  const args = ["serve", configPath, "--control-fd=3", ...(opts.experimental ? ["--experimental"] : []), ...(inspector ? [`--inspector-addr=${inspector}`] : [])];
  const child = spawn(workerdBinary(), args, { cwd: dir, stdio: ["ignore", log ?? "inherit", log ?? "inherit", "pipe"] });
  if (log !== null) closeSync(log);
  let exited = false;
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
    child.once("exit", (code, signal) => {
      exited = true;
      done({ code, signal });
    }),
  );
  const control = child.stdio[3];
  if (!(control instanceof Readable)) throw new Error("workerd: no control channel");

  const wanted = opts.scheduled ? ["http", "scheduled"] : ["http"];
  const ports = new Map<string, number>();
  const lines = createInterface({ input: control });
  const recentOutput = (bytes = 8_192) => (inherit ? "" : tail(logPath, bytes));
  const stopTimeoutMs = opts.stopTimeoutMs ?? 5_000;
  let closing: Promise<void> | null = null;
  const close = () =>
    (closing ??= (async () => {
      lines.close();
      if (!exited) {
        // workerd stops listening on SIGTERM and exits once its open requests are done.
        child.kill("SIGTERM");
        const killer = setTimeout(() => child.kill("SIGKILL"), stopTimeoutMs);
        await exit;
        clearTimeout(killer);
      }
      if (ownsDir) await rm(dir, { recursive: true, force: true });
    })());

  try {
    await new Promise<void>((ready, fail) => {
      const timer = setTimeout(() => fail(new Error(`workerd did not listen within ${opts.startTimeoutMs ?? 15_000} ms`)), opts.startTimeoutMs ?? 15_000);
      const done = (err?: Error) => {
        clearTimeout(timer);
        if (err) fail(err);
        else ready();
      };
      lines.on("line", (line) => {
        let event: { event?: unknown; socket?: unknown; port?: unknown };
        try {
          event = JSON.parse(line) as typeof event;
        } catch {
          return;
        }
        if (event.event === "listen" && typeof event.socket === "string" && typeof event.port === "number") ports.set(event.socket, event.port);
        if (wanted.every((name) => ports.has(name))) done();
      });
      void exit.then(({ code, signal }) => done(new Error(`workerd exited with ${code ?? signal} before it listened`)));
    });
  } catch (err) {
    const output = recentOutput();
    await close();
    const shown = inherit ? "" : `\nworkerd output:\n${output}`;
    throw new Error(`${err instanceof Error ? err.message : String(err)}${shown}`, { cause: err });
  }
  const pid = child.pid;
  if (pid === undefined) throw new Error("workerd: no pid");
  const port = ports.get("http") ?? 0;
  const authority = host.includes(":") ? `[${host}]` : host;
  const scheduledPort = ports.get("scheduled");
  return {
    url: `http://${authority}:${port}`,
    port,
    pid,
    child,
    configPath,
    logPath,
    exited: exit,
    alive: () => !exited,
    recentOutput,
    async runScheduled(cron = "* * * * *", scheduledTime = new Date()) {
      if (scheduledPort === undefined || schedulerToken === null) throw new Error("runScheduled needs startWorkerd({ scheduled: true })");
      const query = new URLSearchParams({ cron, time: String(scheduledTime.getTime()) });
      const res = await fetch(`http://127.0.0.1:${scheduledPort}/?${query.toString()}`, { method: "POST", headers: { authorization: `Bearer ${schedulerToken}` } });
      const text = await res.text();
      if (!res.ok) throw new Error(`the scheduled event failed (HTTP ${res.status}): ${text}`);
      return JSON.parse(text) as ScheduledResult;
    },
    close,
  };
}
