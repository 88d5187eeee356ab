/**
 * Releases of the self-hosted gateway: a folder holding the worker bundled as `wrangler deploy`
 * would upload it, wrangler.toml's settings as read at build time, and the migrations of that
 * checkout. `serve --bundle <dir>` runs one without wrangler or a build step, so a restart takes
 * seconds; keeping the previous one next to it is what makes a rollback a symlink switch.
 *
 * Layout under the data folder: `releases/<version>/{release.json,bundle/,migrations/}` and
 * `current`, a symlink to the active release.
 */
import { execFile } from "node:child_process";
import { cp, lstat, mkdir, readdir, readFile, readlink, rename, rm, symlink, writeFile } from "node:fs/promises";
import { basename, join, relative, resolve } from "node:path";
import { promisify } from "node:util";
import { MIGRATIONS_FOLDER } from "../../dev/db.ts";
import { bundleWorker, readWorkerConfig, ROOT, type ModuleType, type WorkerBundle, type WorkerConfig } from "./bundle.ts";

/** A release folder, read. */
export interface Release {
  version: string;
  /** Absolute path of the release folder. */
  dir: string;
  builtAt: string;
  config: WorkerConfig;
  bundle: WorkerBundle;
  /** The migrations copied from the checkout it was built from. */
  migrationsDir: string;
}

/** release.json: module paths relative to the release folder, so the folder can move. */
interface ReleaseFile {
  format: 1;
  version: string;
  builtAt: string;
  config: WorkerConfig;
  modules: { name: string; path: string; type: ModuleType }[];
}

const RELEASE_FILE = "release.json";

/** Thrown for a release that cannot be built, read or activated; the message says what to do. */
export class ReleaseError extends Error {
  override name = "ReleaseError";
}

/** `releases/` under the data folder. */
export const releasesDir = (dataDir: string) => join(resolve(dataDir), "releases");
/** The `current` symlink under the data folder. */
export const currentLink = (dataDir: string) => join(resolve(dataDir), "current");

const VERSION = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

/** `<UTC time>-<commit>`: sorts by build time, says what was built. */
async function defaultVersion(): Promise<string> {
  const time = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z").replace("T", "-");
  try {
    const { stdout } = await promisify(execFile)("git", ["rev-parse", "--short=10", "HEAD"], { cwd: ROOT });
    return `${time}-${stdout.trim()}`;
  } catch {
    return time; // not a git checkout (a tarball): the time alone
  }
}

/** Bundles the checkout's worker into a new release folder under `<dataDir>/releases/`. */
export async function buildRelease(opts: { dataDir: string; version?: string }): Promise<Release> {
  const version = opts.version ?? (await defaultVersion());
  if (!VERSION.test(version)) throw new ReleaseError(`--version must be letters, digits, '.', '_' or '-' (at most 100), got ${JSON.stringify(version)}`);
  const dir = join(releasesDir(opts.dataDir), version);
  if (await exists(dir)) throw new ReleaseError(`${dir} already exists; pass another --version, or remove it first`);
  // Built beside its final name and renamed, so a half-built release is never listed.
  const building = `${dir}.building-${process.pid}`;
  await mkdir(building, { recursive: true, mode: 0o755 });
  try {
    const [bundle, config] = await Promise.all([bundleWorker(join(building, "bundle")), readWorkerConfig()]);
    await cp(MIGRATIONS_FOLDER, join(building, "migrations"), { recursive: true });
    const file: ReleaseFile = {
      format: 1,
      version,
      builtAt: new Date().toISOString(),
      config,
      modules: bundle.modules.map((m) => ({ name: m.name, path: relative(building, m.path), type: m.type })),
    };
    await writeFile(join(building, RELEASE_FILE), `${JSON.stringify(file, null, 2)}\n`);
    await rename(building, dir);
  } catch (err) {
    await rm(building, { recursive: true, force: true });
    throw err;
  }
  return readRelease(dir);
}

/** Reads a release folder (or the `current` symlink). */
export async function readRelease(dir: string): Promise<Release> {
  const abs = resolve(dir);
  let text: string;
  try {
    text = await readFile(join(abs, RELEASE_FILE), "utf8");
  } catch {
    throw new ReleaseError(`${abs} is not a release folder (no ${RELEASE_FILE}); build one with: npm run gateway -- build --data-dir <data dir> --activate`);
  }
  const file = JSON.parse(text) as ReleaseFile;
  if (file.format !== 1) throw new ReleaseError(`${join(abs, RELEASE_FILE)} has format ${String(file.format)}; this checkout reads format 1`);
  const modules = file.modules.map((m) => ({ name: m.name, path: join(abs, m.path), type: m.type }));
  const main = modules[0];
  if (main === undefined) throw new ReleaseError(`${join(abs, RELEASE_FILE)} lists no modules`);
  return { version: file.version, dir: abs, builtAt: file.builtAt, config: file.config, bundle: { main: main.path, modules }, migrationsDir: join(abs, "migrations") };
}

/** The active release's version, or null when `current` does not exist. */
export async function currentVersion(dataDir: string): Promise<string | null> {
  try {
    return basename(await readlink(currentLink(dataDir)));
  } catch {
    return null;
  }
}

/** Points `current` at `releases/<version>` (atomically: a new symlink renamed over the old one). Returns the version it pointed at before. */
export async function activateRelease(dataDir: string, version: string): Promise<string | null> {
  if (!VERSION.test(version)) throw new ReleaseError(`not a release version: ${JSON.stringify(version)}`);
  const target = join(releasesDir(dataDir), version);
  await readRelease(target);
  const previous = await currentVersion(dataDir);
  const link = currentLink(dataDir);
  const temp = `${link}.new-${process.pid}`;
  await rm(temp, { force: true });
  // Relative, so the data folder can be moved or mounted elsewhere.
  await symlink(join("releases", version), temp);
  await rename(temp, link);
  return previous;
}

/** The releases under the data folder, oldest first, the active one marked. */
export async function listReleases(dataDir: string): Promise<{ version: string; builtAt: string; current: boolean }[]> {
  let names: string[];
  try {
    names = (await readdir(releasesDir(dataDir))).filter((n) => VERSION.test(n) && !n.includes(".building-"));
  } catch {
    return [];
  }
  const current = await currentVersion(dataDir);
  const out = [];
  for (const name of names.sort()) {
    try {
      const release = await readRelease(join(releasesDir(dataDir), name));
      out.push({ version: release.version, builtAt: release.builtAt, current: name === current });
    } catch {
      // not a release (a leftover folder): not listed
    }
  }
  return out;
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}
