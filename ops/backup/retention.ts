import { lstat, readdir, rm } from "node:fs/promises";
import { join } from "node:path";

/** This tool's dump files: `switchyard-20261207T171215.123Z.dump` (UTC, to the millisecond). */
const DUMP_NAME = /^switchyard-\d{8}T\d{6}\.\d{3}Z\.dump$/;
/** What an interrupted backup leaves: the temp file it writes before the rename. */
const PARTIAL_NAME = /^\.switchyard-\d{8}T\d{6}\.\d{3}Z\.dump\.partial$/;
/** A temp file older than this belongs to a run that died (runs have a deadline far below it). */
const PARTIAL_MAX_AGE_MS = 86_400_000;

/** The file name of a backup taken at `at`. */
export function backupFileName(at: Date): string {
  return `switchyard-${at.toISOString().replaceAll("-", "").replaceAll(":", "")}.dump`;
}

/** The temp file a backup is written to before it is renamed to `name`. */
export function partialFileName(name: string): string {
  return `.${name}.partial`;
}

/** One file retention removed. */
export interface PrunedFile {
  name: string;
  bytes: number;
  modifiedAt: Date;
}

/**
 * Deletes this tool's dumps in `dir` last modified more than `retentionDays` days before `now`, and
 * temp files of interrupted runs older than a day. Only regular files whose names this tool writes
 * are touched; anything else in the folder is left alone. `retentionDays` 0 keeps every dump.
 */
export async function pruneBackups(dir: string, retentionDays: number, now: Date): Promise<PrunedFile[]> {
  const pruned: PrunedFile[] = [];
  for (const name of (await readdir(dir)).sort()) {
    const isDump = DUMP_NAME.test(name);
    if (!isDump && !PARTIAL_NAME.test(name)) continue;
    const maxAgeMs = isDump ? retentionDays * 86_400_000 : PARTIAL_MAX_AGE_MS;
    if (maxAgeMs === 0) continue;
    const path = join(dir, name);
    const stat = await lstat(path);
    if (!stat.isFile() || now.getTime() - stat.mtimeMs <= maxAgeMs) continue;
    await rm(path);
    pruned.push({ name, bytes: stat.size, modifiedAt: stat.mtime });
  }
  return pruned;
}
