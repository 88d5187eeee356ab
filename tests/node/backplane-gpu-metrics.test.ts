/**
 * The backplane's GPU gauges (backplane/src/metrics/gpu.ts): a scrape reads the last nvidia-smi
 * sample and never waits for a new one; samples refresh at most every 10 s; a host without
 * nvidia-smi shows no GPU series. And the whole /metrics text passes `promtool check metrics`
 * (Prometheus naming conventions) where promtool is installed.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { createBackplaneMetrics } from "../../backplane/src/metrics/backplane.ts";
import { GpuSampler } from "../../backplane/src/metrics/gpu.ts";
import { createFakeNvidiaSmi, type FakeNvidiaSmi } from "../support/fake-nvidia-smi.ts";

const TWO_GPUS = [
  "0, NVIDIA H100 80GB HBM3, GPU-5c3b9a1e-7f2d-4c1a-9e8b-0a1b2c3d4e5f, 87, 71234, 81559, 64, 512.34",
  "1, NVIDIA GeForce RTX 4090, GPU-0f1e2d3c-4b5a-6978-8a9b-cdeffedcba98, 0, 1024, 24564, 35, [N/A]",
  "",
].join("\n");

const fakes: FakeNvidiaSmi[] = [];
afterAll(async () => {
  for (const f of fakes) await f.remove();
});

const noEngines = { reports: () => [] } as unknown as Parameters<typeof createBackplaneMetrics>[0];

describe("backplane GPU metrics", () => {
  it("serves utilisation and memory per GPU from the last sample, refreshing it at most every 10 s", async () => {
    const fake = await createFakeNvidiaSmi({ stdout: TWO_GPUS });
    fakes.push(fake);
    let now = 1_000_000;
    const sampler = new GpuSampler(fake.path, () => now);
    const metrics = createBackplaneMetrics(noEngines, () => false, sampler);
    // The first scrape starts a sample and does not wait for it.
    expect(metrics.registry.render()).not.toContain("switchyard_gpu_utilization_ratio{");
    await sampler.settled();
    const text = metrics.registry.render();
    expect(text).toContain('switchyard_gpu_utilization_ratio{gpu="0",name="NVIDIA H100 80GB HBM3"} 0.87');
    expect(text).toContain('switchyard_gpu_utilization_ratio{gpu="1",name="NVIDIA GeForce RTX 4090"} 0');
    expect(text).toContain(`switchyard_gpu_memory_used_bytes{gpu="0",name="NVIDIA H100 80GB HBM3"} ${71234 * 1024 * 1024}`);
    expect(text).toContain(`switchyard_gpu_memory_total_bytes{gpu="1",name="NVIDIA GeForce RTX 4090"} ${24564 * 1024 * 1024}`);
    // Within 10 s no new nvidia-smi run; after, one.
    await fake.remove();
    now += 5_000;
    metrics.registry.render();
    await sampler.settled();
    expect(metrics.registry.render()).toContain('switchyard_gpu_utilization_ratio{gpu="0"');
    now += 6_000;
    metrics.registry.render();
    await sampler.settled();
    // nvidia-smi is gone now: the failed sample shows no GPUs.
    expect(metrics.registry.render()).not.toContain('switchyard_gpu_utilization_ratio{gpu="0"');
  });

  it("shows no GPU series on a host without nvidia-smi", async () => {
    const sampler = new GpuSampler("/nonexistent/nvidia-smi");
    const metrics = createBackplaneMetrics(noEngines, () => false, sampler);
    metrics.registry.render();
    await sampler.settled();
    const text = metrics.registry.render();
    expect(text).toContain("# TYPE switchyard_gpu_utilization_ratio gauge");
    expect(text).not.toContain("switchyard_gpu_utilization_ratio{");
  });

  it("passes promtool check metrics (naming conventions)", async (ctx) => {
    const promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"].find((p) => existsSync(p));
    if (!promtool) return ctx.skip("promtool is not installed (Debian: apt-get install prometheus)");
    const fake = await createFakeNvidiaSmi({ stdout: TWO_GPUS });
    fakes.push(fake);
    const sampler = new GpuSampler(fake.path);
    const metrics = createBackplaneMetrics(noEngines, () => false, sampler);
    metrics.registry.render();
    await sampler.settled();
    const text = metrics.registry.render();
    const out = await new Promise<string>((resolve) => {
      const child = execFile(promtool, ["check", "metrics"], { timeout: 30_000 }, (err, stdout, stderr) => resolve(`${err ? `exit ${String((err as { code?: number }).code)}\n` : ""}${stdout}${stderr}`));
      child.stdin?.end(text);
    });
    expect(out).toBe("");
  });
});
