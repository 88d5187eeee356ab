import type { BackupResult } from "./backup.ts";
import type { RestoreResult } from "./restore.ts";

/** 1536 → "1.5 KiB". */
export function formatBytes(bytes: number): string {
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} bytes` : `${value.toFixed(1)} ${units[unit]}`;
}

/** What `db:backup` prints. */
export function formatBackup(result: BackupResult): string {
  const { retentionDays } = result;
  const lines = [
    `Backup written: ${result.file} (${formatBytes(result.bytes)}, ${result.bytes} bytes)`,
    `From ${result.source} (PostgreSQL ${result.server.text}, pg_dump ${result.pgDump.text})`,
  ];
  if (retentionDays === 0) lines.push("Retention off (--retention-days 0): no backup deleted.");
  else if (result.pruned.length === 0) lines.push(`Pruned nothing: no backup older than ${retentionDays} days.`);
  else {
    const bytes = result.pruned.reduce((sum, p) => sum + p.bytes, 0);
    lines.push(`Pruned ${result.pruned.length} file(s) past the retention of ${retentionDays} days (${formatBytes(bytes)}):`);
    for (const p of result.pruned) lines.push(`  ${p.name} (${formatBytes(p.bytes)}, modified ${p.modifiedAt.toISOString()})`);
  }
  return lines.join("\n");
}

/** What `db:restore` prints. */
export function formatRestore(result: RestoreResult): string {
  const how = result.created ? "created it" : result.replaced ? "replaced its previous contents: --force" : "it was empty";
  return [
    `Restored ${result.tables} tables into "${result.database}" at ${result.target} (${how}).`,
    "Redis still holds counters, leases and queued events newer than this dump: see docs/backups.md, \"What Redis holds that a restore does not\".",
  ].join("\n");
}
