import { afterEach, describe, expect, it } from "vitest";
import { totalmem } from "node:os";
import { NVIDIA_SMI_ARGS, parseNvidiaSmiCsv, readSystemResources } from "../../backplane/src/system/resources.ts";
import { createFakeNvidiaSmi, type FakeNvidiaSmi } from "../support/fake-nvidia-smi.ts";

const TWO_GPUS = [
  "0, NVIDIA H100 80GB HBM3, GPU-5c3b9a1e-7f2d-4c1a-9e8b-0a1b2c3d4e5f, 87, 71234, 81559, 64, 512.34",
  "1, NVIDIA GeForce RTX 4090, GPU-0f1e2d3c-4b5a-6978-8a9b-cdeffedcba98, 0, 1024, 24564, 35, [N/A]",
  "",
].join("\n");

let fakes: FakeNvidiaSmi[] = [];
afterEach(async () => {
  await Promise.all(fakes.map((f) => f.remove()));
  fakes = [];
});

describe("system resources", () => {
  it("reads plausible CPU, memory and disk numbers from this machine", async () => {
    const res = await readSystemResources({ nvidiaSmiPath: "/nonexistent/nvidia-smi" });
    expect(res.cpu.cores).toBeGreaterThanOrEqual(1);
    expect(res.cpu.model.length).toBeGreaterThan(0);
    expect(res.cpu.loadAverage).toHaveLength(3);
    for (const load of res.cpu.loadAverage) expect(load).toBeGreaterThanOrEqual(0);
    expect(res.memory.totalBytes).toBe(totalmem());
    expect(res.memory.availableBytes).toBeGreaterThan(0);
    expect(res.memory.availableBytes).toBeLessThanOrEqual(res.memory.totalBytes);
    expect(res.memory.usedBytes).toBe(res.memory.totalBytes - res.memory.availableBytes);
    expect(res.disk.path).toBe("/");
    expect(res.disk.totalBytes).toBeGreaterThan(0);
    expect(res.disk.freeBytes).toBeGreaterThanOrEqual(0);
    expect(res.disk.freeBytes).toBeLessThanOrEqual(res.disk.totalBytes);
  });

  it("reads GPUs from nvidia-smi's CSV, with [N/A] as null and MiB as bytes", async () => {
    const fake = await createFakeNvidiaSmi({ stdout: TWO_GPUS });
    fakes.push(fake);
    const res = await readSystemResources({ nvidiaSmiPath: fake.path, diskPath: "/tmp" });
    expect(await fake.lastArgs()).toEqual(NVIDIA_SMI_ARGS);
    expect(res.gpuError).toBeNull();
    expect(res.disk.path).toBe("/tmp");
    expect(res.gpus).toEqual([
      {
        index: 0, name: "NVIDIA H100 80GB HBM3", uuid: "GPU-5c3b9a1e-7f2d-4c1a-9e8b-0a1b2c3d4e5f", utilizationPct: 87,
        memoryUsedBytes: 71234 * 1024 * 1024, memoryTotalBytes: 81559 * 1024 * 1024, temperatureC: 64, powerDrawW: 512.34,
      },
      {
        index: 1, name: "NVIDIA GeForce RTX 4090", uuid: "GPU-0f1e2d3c-4b5a-6978-8a9b-cdeffedcba98", utilizationPct: 0,
        memoryUsedBytes: 1024 * 1024 * 1024, memoryTotalBytes: 24564 * 1024 * 1024, temperatureC: 35, powerDrawW: null,
      },
    ]);
  });

  it("answers no GPUs and says nvidia-smi was not found when the binary is missing", async () => {
    const res = await readSystemResources({ nvidiaSmiPath: "/nonexistent/nvidia-smi" });
    expect(res.gpus).toEqual([]);
    expect(res.gpuError).toMatch(/nvidia-smi not found/);
  });

  it("reports nvidia-smi's own complaint when it fails (no driver)", async () => {
    const fake = await createFakeNvidiaSmi({
      stdout: "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\n",
      exitCode: 9,
    });
    fakes.push(fake);
    const res = await readSystemResources({ nvidiaSmiPath: fake.path });
    expect(res.gpus).toEqual([]);
    expect(res.gpuError).toMatch(/^nvidia-smi failed: NVIDIA-SMI has failed because it couldn't communicate/);
  });

  it("parses a GPU name that contains commas and [Not Supported] fields", () => {
    const gpus = parseNvidiaSmiCsv("3, Tesla T4, rev A, GPU-abc, [Not Supported], 10, 15360, [N/A], 27.5\n");
    expect(gpus).toEqual([
      { index: 3, name: "Tesla T4, rev A", uuid: "GPU-abc", utilizationPct: null, memoryUsedBytes: 10 * 1024 * 1024, memoryTotalBytes: 15360 * 1024 * 1024, temperatureC: null, powerDrawW: 27.5 },
    ]);
  });
});
