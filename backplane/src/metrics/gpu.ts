/**
 * The host's GPUs in the backplane's /metrics (docs/backplane.md#health-metrics-heartbeats):
 * utilisation and memory per GPU, as nvidia-smi reports them. nvidia-smi takes tens of milliseconds,
 * so a scrape never waits for it: it reads the last sample, and starts a new one (one at a time)
 * when that is older than the refresh interval. A host without nvidia-smi is asked again only every
 * few minutes; its GPU series are simply absent.
 */
import type { GpuInfo } from "../../../schema/contracts/system-resources.ts";
import { runNvidiaSmi } from "../system/resources.ts";

/** A sample is refreshed when a scrape finds it older than this. */
const REFRESH_MS = 10_000;
/** After nvidia-smi failed, it is tried again this much later. */
const RETRY_FAILED_MS = 300_000;

export class GpuSampler {
  private gpus: GpuInfo[] = [];
  private sampledAt = 0;
  private failed = false;
  private running: Promise<void> | null = null;

  private readonly nvidiaSmiPath: string;
  private readonly now: () => number;

  constructor(nvidiaSmiPath: string, now: () => number = Date.now) {
    this.nvidiaSmiPath = nvidiaSmiPath;
    this.now = now;
  }

  /** The last sample (empty until the first finished); starts a refresh when it is due. */
  current(): GpuInfo[] {
    const age = this.now() - this.sampledAt;
    if (this.running === null && age >= (this.failed ? RETRY_FAILED_MS : REFRESH_MS)) {
      this.running = runNvidiaSmi(this.nvidiaSmiPath).then((r) => {
        this.gpus = r.gpus;
        this.failed = r.gpuError !== null;
        this.sampledAt = this.now();
        this.running = null;
      });
    }
    return this.gpus;
  }

  /** Waits for a refresh in progress (tests, and a first scrape that wants data). */
  async settled(): Promise<void> {
    await this.running;
  }
}
