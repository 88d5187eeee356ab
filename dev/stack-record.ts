/**
 * Which data folder serves which local gateway. `startStack` writes a record per gateway URL and
 * removes it on close, so `npm run admin` finds the admin token of the stack it talks to whatever
 * SWITCHYARD_DATA_DIR that stack was started with. Records live in the OS temp folder (per user),
 * not in the repository: they describe running processes, not state worth keeping.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";

/** The record file for the gateway at `gatewayUrl` (e.g. http://127.0.0.1:8787). */
export function stackRecordFile(gatewayUrl: string): string {
  const url = new URL(gatewayUrl);
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  return join(tmpdir(), `switchyard-${userInfo().uid}`, `stack-${url.hostname.replace(/[^\w.-]/g, "_")}-${port}.json`);
}

/** Notes that the stack at `gatewayUrl` keeps its state in `dataDir`; returns a function that removes the note. */
export function writeStackRecord(gatewayUrl: string, dataDir: string): () => void {
  const file = stackRecordFile(gatewayUrl);
  mkdirSync(join(file, ".."), { recursive: true, mode: 0o700 });
  writeFileSync(file, `${JSON.stringify({ gatewayUrl, dataDir, pid: process.pid })}\n`, { mode: 0o600 });
  return () => rmSync(file, { force: true });
}

/** The data folder of the local stack at `gatewayUrl`, if one is running (or was, without a clean stop). */
export function readStackRecord(gatewayUrl: string): string | undefined {
  try {
    const record: unknown = JSON.parse(readFileSync(stackRecordFile(gatewayUrl), "utf8"));
    if (record && typeof record === "object" && "dataDir" in record && typeof record.dataDir === "string") return record.dataDir;
  } catch {
    // No record (or an unreadable one): the caller falls back to the default folder.
  }
  return undefined;
}
