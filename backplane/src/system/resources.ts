import { execFile } from "node:child_process";
import { readFile, statfs } from "node:fs/promises";
import { availableParallelism, cpus, freemem, loadavg, totalmem } from "node:os";
import type { GpuInfo, SystemResources } from "../../../schema/contracts/system-resources.ts";

/** The query the GPU facts come from; the column order is what `parseNvidiaSmiCsv` expects. */
export const NVIDIA_SMI_ARGS = [
  "--query-gpu=index,name,uuid,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw",
  "--format=csv,noheader,nounits",
];

const MIB = 1024 * 1024;
const NVIDIA_SMI_TIMEOUT_MS = 10_000;

function num(field: string | undefined): number | null {
  const value = field?.trim() ?? "";
  // nvidia-smi prints "[N/A]" or "[Not Supported]" for what a board cannot measure (power on many consumer cards).
  if (value === "" || value.startsWith("[") || !/^-?\d+(\.\d+)?$/.test(value)) return null;
  return Number(value);
}

/** Parses `--format=csv,noheader,nounits` rows of NVIDIA_SMI_ARGS. A name containing commas is rejoined. */
export function parseNvidiaSmiCsv(text: string): GpuInfo[] {
  const gpus: GpuInfo[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    const fields = line.split(",").map((f) => f.trim());
    if (fields.length < 8) continue;
    const tail = fields.slice(-6);
    const index = num(fields[0]);
    if (index === null) continue;
    const mib = (v: string | undefined) => {
      const n = num(v);
      return n === null ? null : n * MIB;
    };
    gpus.push({
      index,
      name: fields.slice(1, -6).join(", "),
      uuid: tail[0] ?? "",
      utilizationPct: num(tail[1]),
      memoryUsedBytes: mib(tail[2]),
      memoryTotalBytes: mib(tail[3]),
      temperatureC: num(tail[4]),
      powerDrawW: num(tail[5]),
    });
  }
  return gpus;
}

/** The GPUs as nvidia-smi reports them (bounded by its timeout); never throws: see `gpuError`. */
export function runNvidiaSmi(path: string): Promise<{ gpus: GpuInfo[]; gpuError: string | null }> {
  return new Promise((resolve) => {
    execFile(path, NVIDIA_SMI_ARGS, { timeout: NVIDIA_SMI_TIMEOUT_MS, encoding: "utf8" }, (err, stdout, stderr) => {
      if (err === null) {
        resolve({ gpus: parseNvidiaSmiCsv(stdout), gpuError: null });
        return;
      }
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") {
        resolve({ gpus: [], gpuError: `nvidia-smi not found (${path}); no GPU facts` });
        return;
      }
      // e.g. "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver" (exit 9).
      const detail = (stderr || stdout).trim().split("\n")[0] ?? "";
      resolve({ gpus: [], gpuError: `nvidia-smi failed: ${detail || err.message}` });
    });
  });
}

/** MemAvailable from /proc/meminfo (free + reclaimable cache); os.freemem() where it does not exist. */
async function availableMemory(): Promise<number> {
  try {
    const match = /^MemAvailable:\s+(\d+)\s+kB$/m.exec(await readFile("/proc/meminfo", "utf8"));
    if (match?.[1] !== undefined) return Number(match[1]) * 1024;
  } catch {
    // Not Linux: fall back below.
  }
  return freemem();
}

/** Reads CPU, memory, disk and GPU facts. Never throws for a missing or broken nvidia-smi: see `gpuError`. */
export async function readSystemResources(opts: { nvidiaSmiPath: string; diskPath?: string }): Promise<SystemResources> {
  const diskPath = opts.diskPath ?? "/";
  const [available, fsStats, gpu] = await Promise.all([availableMemory(), statfs(diskPath), runNvidiaSmi(opts.nvidiaSmiPath)]);
  const total = totalmem();
  const [l1 = 0, l5 = 0, l15 = 0] = loadavg();
  return {
    cpu: { cores: availableParallelism(), model: cpus()[0]?.model.trim() ?? "unknown", loadAverage: [l1, l5, l15] },
    memory: { totalBytes: total, availableBytes: available, usedBytes: Math.max(0, total - available) },
    // bavail, not bfree: the blocks an unprivileged process (the daemon pulling models) may use.
    disk: { path: diskPath, totalBytes: fsStats.blocks * fsStats.bsize, freeBytes: fsStats.bavail * fsStats.bsize },
    gpus: gpu.gpus,
    gpuError: gpu.gpuError,
  };
}
