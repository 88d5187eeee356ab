/**
 * llama.cpp's `llama-server`, built here from the source that ships inside the npm package
 * `node-llama-cpp` (`llama/gitRelease.bundle`, a git bundle): no GPU and no network beyond the npm
 * registry. Everything lives under `.data/llama/` and is reused by later runs; the first build takes
 * about 10 to 20 minutes on two cores. `LLAMA_SERVER=<path>` uses an existing binary instead.
 */
import { execFile, spawn } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";

/** The node-llama-cpp release whose llama.cpp source is built (its bundle is llama.cpp at one commit). */
export const NODE_LLAMA_CPP_VERSION = "3.22.1";

const run = promisify(execFile);

/** Where the source, the build and the model go. */
export function llamaDir(root: string): string {
  return join(root, ".data", "llama");
}

/** Whether a command is on PATH. */
async function has(command: string): Promise<boolean> {
  try {
    await run("sh", ["-c", `command -v ${command}`]);
    return true;
  } catch {
    return false;
  }
}

/** Runs a long command with its output in `logFile`; rejects with the log's path when it fails. */
function runLogged(command: string, args: string[], opts: { cwd: string; logFile: string }): Promise<void> {
  return new Promise((resolve, reject) => {
    const log = createWriteStream(opts.logFile, { flags: "a" });
    const child = spawn(command, args, { cwd: opts.cwd, stdio: ["ignore", "pipe", "pipe"] });
    child.stdout.pipe(log, { end: false });
    child.stderr.pipe(log, { end: false });
    child.once("error", (err) => reject(err));
    child.once("exit", (code) => {
      log.end();
      if (code === 0) resolve();
      else reject(new Error(`${command} ${args.join(" ")} failed (exit ${code}); see ${opts.logFile}`));
    });
  });
}

/** llama.cpp's source tree under `.data/llama/src`, unpacked from node-llama-cpp's git bundle when missing. */
export async function ensureLlamaSource(root: string, log: (line: string) => void): Promise<string> {
  const dir = llamaDir(root);
  const src = join(dir, "src");
  if (existsSync(join(src, "CMakeLists.txt")) && existsSync(join(src, "tools", "server"))) return src;
  for (const tool of ["npm", "tar", "git"]) if (!(await has(tool))) throw new Error(`'${tool}' is needed to unpack llama.cpp's source; install it and run again.`);
  mkdirSync(dir, { recursive: true });
  log(`fetching node-llama-cpp@${NODE_LLAMA_CPP_VERSION} from the npm registry (its llama.cpp source bundle)`);
  await run("npm", ["pack", `node-llama-cpp@${NODE_LLAMA_CPP_VERSION}`, "--silent"], { cwd: dir, maxBuffer: 16 * 1024 * 1024 });
  const tarball = readdirSync(dir).find((f) => f.startsWith("node-llama-cpp-") && f.endsWith(".tgz"));
  if (!tarball) throw new Error(`npm pack node-llama-cpp@${NODE_LLAMA_CPP_VERSION} left no tarball in ${dir}`);
  await run("tar", ["xzf", tarball, "package/llama/gitRelease.bundle"], { cwd: dir });
  rmSync(src, { recursive: true, force: true });
  await run("git", ["clone", "--quiet", join("package", "llama", "gitRelease.bundle"), "src"], { cwd: dir });
  return src;
}

/**
 * The path of a `llama-server` binary: `LLAMA_SERVER`, else the one built under `.data/llama`,
 * building it first when it is missing (cmake, CPU only, the web UI and OpenSSL off).
 */
export async function ensureLlamaServer(root: string, log: (line: string) => void): Promise<{ binary: string; src: string }> {
  const src = await ensureLlamaSource(root, log);
  const given = process.env.LLAMA_SERVER;
  if (given) {
    if (!existsSync(given)) throw new Error(`LLAMA_SERVER=${given} does not exist.`);
    return { binary: given, src };
  }
  const binary = join(src, "build", "bin", "llama-server");
  if (existsSync(binary)) return { binary, src };
  for (const tool of ["cmake", "c++"]) {
    if (!(await has(tool))) throw new Error(`'${tool}' is needed to build llama-server (Debian: apt-get install cmake g++); or set LLAMA_SERVER to a built binary.`);
  }
  const logFile = join(llamaDir(root), "build.log");
  log(`building llama-server from ${src} (about 10 to 20 minutes on two cores; progress in ${logFile})`);
  await runLogged(
    "cmake",
    ["-B", "build", "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF"],
    { cwd: src, logFile },
  );
  await runLogged("cmake", ["--build", "build", "--target", "llama-server", "-j", String(Math.max(1, (await import("node:os")).availableParallelism()))], { cwd: src, logFile });
  if (!existsSync(binary)) throw new Error(`the build finished but ${binary} is missing; see ${logFile}`);
  return { binary, src };
}
