import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A fake nvidia-smi: a shell script in a temp dir that prints fixed CSV and records its arguments. */
export interface FakeNvidiaSmi {
  readonly path: string;
  /** The arguments of the last run, one per line. */
  lastArgs(): Promise<string[]>;
  remove(): Promise<void>;
}

/** Writes a script printing `stdout` (and `stderr`) and exiting with `exitCode`. */
export async function createFakeNvidiaSmi(opts: { stdout: string; stderr?: string; exitCode?: number }): Promise<FakeNvidiaSmi> {
  const dir = await mkdtemp(join(tmpdir(), "fake-nvidia-smi-"));
  const path = join(dir, "nvidia-smi");
  const argsFile = join(dir, "args");
  await writeFile(join(dir, "stdout"), opts.stdout);
  await writeFile(join(dir, "stderr"), opts.stderr ?? "");
  const script = [
    "#!/bin/sh",
    `dir="${dir}"`,
    'printf "%s\\n" "$@" > "$dir/args"',
    'cat "$dir/stdout"',
    'cat "$dir/stderr" >&2',
    `exit ${opts.exitCode ?? 0}`,
    "",
  ].join("\n");
  await writeFile(path, script);
  await chmod(path, 0o755);
  return {
    path,
    lastArgs: async () => (await readFile(argsFile, "utf8")).split("\n").filter((l) => l !== ""),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
