/**
 * Workers under plain `workerd`, as the edge runs them: bundled the way `wrangler deploy` bundles
 * (worker-bundle.ts) and served from a generated Cap'n Proto config that carries the bindings.
 * No `wrangler dev`: its proxy hop and Node process would be measured as the worker's cost.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync, readSync, statSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { createInterface } from "node:readline";
import { Readable } from "node:stream";
import { bundleScript, readWorkerConfig, ROOT, type DurableObjectBinding, type WorkerBundle, type WorkerModule } from "./worker-bundle.ts";

export { bundleScript, bundleWorker, readWorkerConfig, ROOT, type DurableObjectBinding, type ModuleType, type WorkerBundle, type WorkerConfig, type WorkerModule } from "./worker-bundle.ts";

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
  /** Text bindings: every var and secret. */
  bindings: Record<string, string>;
  /**
   * Durable Object namespaces of the worker's own classes, bound under their names (a
   * `WorkerConfig`'s `durableObjects`). Their storage is in memory, for the life of the process.
   */
  durableObjects?: DurableObjectBinding[];
  compatibilityDate: string;
  compatibilityFlags?: string[];
  host?: string;
  /** 0 (default) lets the OS pick; the port is read back from workerd's control channel. */
  port?: number;
  /**
   * Also serve the worker's `scheduled` handler, in the same isolate, on a second loopback port:
   * `runScheduled(cron)` fires it and resolves once its `waitUntil` work is done. workerd runs no
   * Cron Triggers by itself. The `fetch` path is the bundle's own export, untouched.
   */
  scheduled?: boolean;
  /** Folder for the config and the log; default a temp folder removed by `close()`. */
  dir?: string;
  /** `--experimental` (only for experimental compatibility flags or config features). */
  experimental?: boolean;
  startTimeoutMs?: number;
}

/** A running workerd. */
export interface Workerd {
  /** `http://host:port` of the worker. */
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Config written for it, and the file its stdout and stderr (the worker's console) go to. */
  readonly configPath: string;
  readonly logPath: string;
  alive(): boolean;
  /** The last `bytes` of its output. */
  recentOutput(bytes?: number): string;
  /** Runs the worker's `scheduled` handler now (needs `scheduled: true`). */
  runScheduled(cron?: string): Promise<void>;
  /** SIGTERM (SIGKILL after 5 s); removes the temp folder it made. Safe to call twice. */
  close(): Promise<void>;
}

const SCHEDULER_MODULE = "switchyard-bench-scheduler.js";

// A main module that re-exports the bundle unchanged and adds the `scheduler` entrypoint. Named
// entrypoints of one worker share its isolate, so the job sees the same module state (isolate
// caches, pending counters) as a Cron Trigger in that isolate would.
function schedulerModule(mainName: string): string {
  const target = JSON.stringify(`./${mainName}`);
  return `import worker from ${target};
export * from ${target};
export default worker;
export const scheduler = {
  async fetch(request, env, ctx) {
    const cron = new URL(request.url).searchParams.get("cron") ?? "* * * * *";
    const pending = [];
    const inner = { waitUntil: (p) => void pending.push(p), passThroughOnException: () => {}, props: ctx.props };
    const controller = { cron, scheduledTime: Date.now(), type: "scheduled", noRetry: () => {} };
    try {
      await worker.scheduled(controller, env, inner);
      const settled = await Promise.allSettled(pending);
      const failed = settled.find((s) => s.status === "rejected");
      if (failed) return new Response(String(failed.reason), { status: 500 });
      return new Response("ok");
    } catch (err) {
      return new Response(String(err && err.stack || err), { status: 500 });
    }
  },
};
`;
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
  // One namespace per class (two bindings may name the same class); the key only has to be stable
  // for the process's life, as the storage is in memory.
  const classes = [...new Map(objects.map((o) => [o.className, o])).values()];
  const namespaceLines = classes.map((o) => `    (className = ${capnpText(o.className)}, uniqueKey = ${capnpText(`${opts.name}-${o.className}`)}${o.sql ? ", enableSql = true" : ""}),`);
  const storage = classes.length === 0 ? "" : `  durableObjectNamespaces = [\n${namespaceLines.join("\n")}\n  ],\n  durableObjectStorage = (inMemory = void),\n`;
  const flags = (opts.compatibilityFlags ?? []).map(capnpText).join(", ");
  const address = (p: number) => capnpText(`${host.includes(":") ? `[${host}]` : host}:${p}`);
  const sockets = [`    (name = "http", address = ${address(port)}, http = (), service = "worker"),`];
  if (opts.scheduled) sockets.push(`    (name = "scheduled", address = ${address(0)}, http = (), service = (name = "worker", entrypoint = "scheduler")),`);
  return `# Generated by bench/lib/workerd.ts for ${opts.name}.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "worker", worker = .worker),
    # The worker reaches local servers (backplanes, the Upstash-REST adapter, the Neon pipe) on
    # loopback; workerd's default "internet" service allows public addresses only.
    (name = "network", network = (allow = ["public", "private", "local"])),
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
  await mkdir(dir, { recursive: true });
  const host = opts.host ?? "127.0.0.1";
  let modules = opts.modules;
  if (opts.scheduled) {
    const path = join(dir, SCHEDULER_MODULE);
    await writeFile(path, schedulerModule(main.name));
    modules = [{ name: SCHEDULER_MODULE, path, type: "esModule" }, ...opts.modules];
  }
  const configPath = join(dir, "workerd.capnp");
  const logPath = join(dir, "workerd.log");
  await writeFile(configPath, configText(opts, dir, modules, host, opts.port ?? 0));

  const log = openSync(logPath, "a");
  // BENCH_WORKERD_INSPECTOR=host:port opens V8's inspector (CPU profiles of the worker; bench/README.md).
  const inspector = process.env.BENCH_WORKERD_INSPECTOR;
  const args = ["serve", configPath, "--control-fd=3", ...(opts.experimental ? ["--experimental"] : []), ...(inspector ? [`--inspector-addr=${inspector}`] : [])];
  const child = spawn(workerdBinary(), args, { cwd: dir, stdio: ["ignore", log, log, "pipe"] });
  closeSync(log);
  let exited = false;
  const exit = new Promise<void>((done) =>
    child.once("exit", () => {
      exited = true;
      done();
    }),
  );
  const control = child.stdio[3];
  if (!(control instanceof Readable)) throw new Error("workerd: no control channel");

  const wanted = opts.scheduled ? ["http", "scheduled"] : ["http"];
  const ports = new Map<string, number>();
  const lines = createInterface({ input: control });
  const recentOutput = (bytes = 8_192) => tail(logPath, bytes);
  let closing: Promise<void> | null = null;
  const close = () =>
    (closing ??= (async () => {
      lines.close();
      if (!exited) {
        child.kill("SIGTERM");
        const killer = setTimeout(() => child.kill("SIGKILL"), 5_000);
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
      void exit.then(() => done(new Error(`workerd exited with ${child.exitCode ?? child.signalCode} before it listened`)));
    });
  } catch (err) {
    const output = recentOutput();
    await close();
    throw new Error(`${err instanceof Error ? err.message : String(err)}\nworkerd output:\n${output}`, { cause: err });
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
    alive: () => !exited,
    recentOutput,
    async runScheduled(cron = "* * * * *") {
      if (scheduledPort === undefined) throw new Error("runScheduled needs startWorkerd({ scheduled: true })");
      const res = await fetch(`http://${authority}:${scheduledPort}/?cron=${encodeURIComponent(cron)}`);
      const text = await res.text();
      if (!res.ok) throw new Error(`the scheduled job failed (HTTP ${res.status}): ${text}`);
    },
    close,
  };
}

/** The bare Hono forwarder (bench/workers/hono-forwarder.ts). */
export const HONO_FORWARDER_ENTRY = join(ROOT, "bench/workers/hono-forwarder.ts");

/**
 * Starts the bare Hono forwarder on workerd, forwarding to `upstream`, with the gateway's
 * compatibility settings unless given. Pass `bundle` (from `bundleHonoForwarder`) to reuse one.
 */
export async function startHonoForwarder(opts: {
  upstream: string;
  host?: string;
  port?: number;
  compatibilityDate?: string;
  compatibilityFlags?: string[];
  bundle?: WorkerBundle;
}): Promise<Workerd> {
  let compatibilityDate = opts.compatibilityDate;
  let compatibilityFlags = opts.compatibilityFlags;
  if (compatibilityDate === undefined) {
    const project = await readWorkerConfig();
    compatibilityDate = project.compatibilityDate;
    compatibilityFlags ??= project.compatibilityFlags;
  }
  // workerd reads the embedded modules when it loads the config, so a bundle made here can go as
  // soon as it listens.
  const bundleDir = opts.bundle ? null : await mkdtemp(join(tmpdir(), "sy-forwarder-"));
  try {
    const bundle = opts.bundle ?? (await bundleHonoForwarder(join(bundleDir ?? "", "bundle"), { compatibilityDate, compatibilityFlags }));
    return await startWorkerd({
      name: "hono-forwarder",
      modules: bundle.modules,
      bindings: { UPSTREAM: opts.upstream },
      compatibilityDate,
      compatibilityFlags,
      host: opts.host,
      port: opts.port,
    });
  } finally {
    if (bundleDir !== null) await rm(bundleDir, { recursive: true, force: true });
  }
}

/** Bundles the bare Hono forwarder into `outDir` (as `wrangler deploy` would). */
export function bundleHonoForwarder(outDir: string, opts: { compatibilityDate: string; compatibilityFlags?: string[] }): Promise<WorkerBundle> {
  return bundleScript(HONO_FORWARDER_ENTRY, outDir, { name: "hono-forwarder", ...opts });
}
