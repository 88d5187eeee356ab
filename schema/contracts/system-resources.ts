/**
 * A backplane's host facts, as `GET /management/system/resources` answers them
 * (backplane/src/system/resources.ts) and the gateway reads them (worker/src/nodes/host-admin.ts).
 */

/** One GPU as nvidia-smi reports it; null where it prints `[N/A]` or `[Not Supported]`. */
export interface GpuInfo {
  index: number;
  name: string;
  uuid: string;
  /** Percent, 0–100. */
  utilizationPct: number | null;
  memoryUsedBytes: number | null;
  memoryTotalBytes: number | null;
  temperatureC: number | null;
  powerDrawW: number | null;
}

/** Facts about the host for status pages and heartbeats. */
export interface SystemResources {
  cpu: { cores: number; model: string; loadAverage: [number, number, number] };
  memory: { totalBytes: number; availableBytes: number; usedBytes: number };
  disk: { path: string; totalBytes: number; freeBytes: number };
  gpus: GpuInfo[];
  /** Why `gpus` is empty or incomplete (no nvidia-smi, driver error…); null when nvidia-smi answered. */
  gpuError: string | null;
}
