/**
 * Workers bundled the way `wrangler deploy` uploads them (`--dry-run --outdir`, offline), and the
 * settings of a wrangler config, for serving them under plain workerd (workerd.ts).
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, extname, join, relative, resolve } from "node:path";

/** Root of the repository. */
export const ROOT = resolve(import.meta.dirname, "../..");

/** How workerd loads a module (the field of `Worker.Module` in workerd.capnp). */
export type ModuleType = "esModule" | "commonJsModule" | "text" | "data" | "wasm" | "json";

/** One module of a bundled worker. */
export interface WorkerModule {
  /** Name the other modules import it by (relative to the bundle's folder). */
  name: string;
  /** Absolute path of the file. */
  path: string;
  type: ModuleType;
}

/** A bundled worker: the main module first, then any module it imports that wrangler left out of it. */
export interface WorkerBundle {
  /** Absolute path of the main module. */
  main: string;
  modules: WorkerModule[];
}

/** What the workerd config needs from a wrangler config. */
export interface WorkerConfig {
  name: string;
  compatibilityDate: string;
  compatibilityFlags: string[];
  /** `[vars]`, as text bindings. */
  vars: Record<string, string>;
  /** `[secrets] required`: bindings the deployment must provide. */
  requiredSecrets: string[];
  /** `[[durable_objects.bindings]]` of classes this worker exports (`sql`: listed in a migration's `new_sqlite_classes`). */
  durableObjects: DurableObjectBinding[];
}

/** A Durable Object namespace binding of the worker's own class. */
export interface DurableObjectBinding {
  binding: string;
  className: string;
  /** SQLite-backed (`new_sqlite_classes`): the namespace gets workerd's `enableSql`. */
  sql: boolean;
}

const WRANGLER = join(ROOT, "node_modules/wrangler/bin/wrangler.js");
/** Offline settings (toolchain.md): no request.cf fetch from the internet, no telemetry. */
const WRANGLER_ENV = { CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" };

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

async function run(args: string[], env: Record<string, string>): Promise<Ran> {
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
  child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  const [code] = (await once(child, "close")) as [number | null];
  return { code, stdout, stderr };
}

// Module rules of wrangler's defaults (https://developers.cloudflare.com/workers/wrangler/bundling/).
function moduleType(file: string): ModuleType | null {
  const ext = extname(file);
  if (ext === ".js" || ext === ".mjs") return "esModule";
  if (ext === ".cjs") return "commonJsModule";
  if (ext === ".wasm") return "wasm";
  if (ext === ".txt" || ext === ".html" || ext === ".sql") return "text";
  if (ext === ".bin") return "data";
  if (ext === ".json") return "json";
  return null;
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

/**
 * Bundles a worker exactly as `wrangler deploy` would upload it (`wrangler deploy --dry-run --outdir
 * <outDir>`, offline) and lists what it wrote. `configPath` defaults to the project's wrangler.toml;
 * `mainName` (the main module's file name, e.g. "index.js") is needed only when wrangler emitted
 * more than one top-level script.
 */
export async function bundleWorker(outDir: string, opts: { configPath?: string; mainName?: string } = {}): Promise<WorkerBundle> {
  const out = resolve(outDir);
  await mkdir(out, { recursive: true });
  const configPath = opts.configPath ?? join(ROOT, "wrangler.toml");
  const ran = await run([WRANGLER, "deploy", "--dry-run", "--outdir", out, "--config", configPath], {
    ...WRANGLER_ENV,
    WRANGLER_LOG: "warn",
    WRANGLER_LOG_PATH: join(tmpdir(), "switchyard-wrangler-logs"),
  });
  if (ran.code !== 0) {
    // wrangler.toml's [build] command makes the dashboard's browser bundle; its own error is easy to miss in wrangler's output.
    const hint = /custom build/i.test(ran.stderr + ran.stdout) ? `\nThe build step makes the dashboard's browser bundle: run \`npm run build:dashboard\` in ${ROOT} to see why it failed.` : "";
    throw new Error(`wrangler deploy --dry-run failed (exit ${ran.code}):\n${ran.stderr || ran.stdout}${hint}`);
  }
  const files = (await filesUnder(out)).filter((f) => !f.endsWith(".map") && !f.endsWith("README.md"));
  const modules: WorkerModule[] = [];
  for (const path of files) {
    const type = moduleType(path);
    if (type !== null) modules.push({ name: relative(out, path), path, type });
  }
  const scripts = modules.filter((m) => m.type === "esModule" && !m.name.includes("/"));
  const main = opts.mainName === undefined ? (scripts.length === 1 ? scripts[0] : undefined) : modules.find((m) => m.name === opts.mainName);
  if (!main) {
    throw new Error(`cannot tell the main module among ${scripts.map((m) => m.name).join(", ") || "no scripts"} in ${out}; pass mainName`);
  }
  if (resolve(configPath) === join(ROOT, "wrangler.toml")) await checkDashboardAssets(main.path);
  return { main: main.path, modules: [main, ...modules.filter((m) => m !== main)] };
}

/** The module dev/build-dashboard.ts generates (git-ignored), which the worker imports for /dashboard/assets/. */
const DASHBOARD_ASSETS = join(ROOT, "worker/src/dashboard/assets.generated.ts");

/**
 * Makes sure the bundle serves the dashboard's current browser bundle: wrangler runs the [build]
 * command first, but a release must not ship without (or with a stale) script and stylesheet.
 */
async function checkDashboardAssets(mainPath: string): Promise<void> {
  let generated: string;
  try {
    generated = await readFile(DASHBOARD_ASSETS, "utf8");
  } catch {
    throw new Error(`${relative(ROOT, DASHBOARD_ASSETS)} is missing, so the worker would have no dashboard script or stylesheet: run \`npm run build:dashboard\` in ${ROOT}, then build again`);
  }
  const version = /DASHBOARD_ASSET_VERSION = "([0-9a-f]+)"/.exec(generated)?.[1];
  if (version === undefined) throw new Error(`${relative(ROOT, DASHBOARD_ASSETS)} names no DASHBOARD_ASSET_VERSION: run \`npm run build:dashboard\` in ${ROOT}, then build again`);
  if (!(await readFile(mainPath, "utf8")).includes(`"${version}"`)) {
    throw new Error(`the bundle ${mainPath} lacks the dashboard assets ${version} of ${relative(ROOT, DASHBOARD_ASSETS)}: run \`npm run build:dashboard\` in ${ROOT}, then build again`);
  }
}

/**
 * Bundles a single-file worker (no wrangler.toml of its own) through a throwaway wrangler config,
 * so it gets the same bundler and settings as the gateway.
 */
export async function bundleScript(entry: string, outDir: string, opts: { name: string; compatibilityDate: string; compatibilityFlags?: string[] }): Promise<WorkerBundle> {
  const configDir = await mkdtemp(join(tmpdir(), "sy-wrangler-"));
  try {
    const configPath = join(configDir, "wrangler.json");
    const config = {
      name: opts.name,
      main: resolve(entry),
      compatibility_date: opts.compatibilityDate,
      compatibility_flags: opts.compatibilityFlags ?? [],
      send_metrics: false,
    };
    await writeFile(configPath, JSON.stringify(config, null, 2));
    const mainName = `${basename(entry).replace(/\.[cm]?[jt]s$/, "")}.js`;
    return await bundleWorker(outDir, { configPath, mainName });
  } finally {
    await rm(configDir, { recursive: true, force: true });
  }
}

// Reading a wrangler config takes wrangler's own parser (TOML, JSON, environments), which costs
// about a second of import and 100 MB in whatever process loads it; a child process keeps that out
// of the benchmark process, whose CPU is measured.
const READ_CONFIG = `
import { experimental_readRawConfig } from "wrangler";
const { rawConfig } = experimental_readRawConfig({ config: process.argv[1] });
process.stdout.write("\\n" + JSON.stringify({
  name: rawConfig.name ?? "worker",
  compatibilityDate: rawConfig.compatibility_date ?? "",
  compatibilityFlags: rawConfig.compatibility_flags ?? [],
  vars: rawConfig.vars ?? {},
  requiredSecrets: rawConfig.secrets?.required ?? [],
  durableObjects: (rawConfig.durable_objects?.bindings ?? []).map((b) => ({ binding: b.name, className: b.class_name, scriptName: b.script_name ?? null })),
  sqliteClasses: (rawConfig.migrations ?? []).flatMap((m) => m.new_sqlite_classes ?? []),
}) + "\\n");
`;

/** Name, compatibility settings, `[vars]` and required secrets of a wrangler config (default: the project's wrangler.toml). */
export async function readWorkerConfig(configPath = join(ROOT, "wrangler.toml")): Promise<WorkerConfig> {
  const ran = await run(["--input-type=module", "-e", READ_CONFIG, configPath], WRANGLER_ENV);
  const last = ran.stdout.trim().split("\n").at(-1) ?? "";
  if (ran.code !== 0 || !last.startsWith("{")) throw new Error(`cannot read ${configPath} (exit ${ran.code}):\n${ran.stderr || ran.stdout}`);
  type RawBinding = { binding: string; className: string; scriptName: string | null };
  const { durableObjects: rawObjects, sqliteClasses, ...raw } = JSON.parse(last) as Omit<WorkerConfig, "vars" | "durableObjects"> & {
    vars: Record<string, unknown>;
    durableObjects: RawBinding[];
    sqliteClasses: string[];
  };
  const vars: Record<string, string> = {};
  for (const [key, value] of Object.entries(raw.vars)) {
    // wrangler would make a JSON binding of anything else; the gateway's vars are all text.
    if (typeof value !== "string") throw new Error(`[vars] ${key} in ${configPath} is not a string; only text vars are supported here`);
    vars[key] = value;
  }
  if (raw.compatibilityDate === "") throw new Error(`${configPath} sets no compatibility_date`);
  // A binding to another worker's class (script_name) has no namespace here; the gateway has none.
  const foreign = rawObjects.filter((b) => b.scriptName !== null);
  if (foreign.length > 0) throw new Error(`${configPath} binds Durable Objects of another worker (${foreign.map((b) => b.binding).join(", ")}); only the worker's own classes are supported here`);
  const durableObjects = rawObjects.map((b) => ({ binding: b.binding, className: b.className, sql: sqliteClasses.includes(b.className) }));
  return { ...raw, vars, durableObjects };
}
