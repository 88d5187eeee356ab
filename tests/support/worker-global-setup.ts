/**
 * Global setup of the workerd test run. The services (database, adapters, backplane, simulated
 * engine) run in a plain Node child process (tests/support/worker-services.ts): the Workers plugin
 * resolves modules for workerd, which breaks Node-only packages such as ioredis if they are loaded
 * here. The child prints one `READY <json>` line; its values become the worker's bindings.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { TestProject } from "vitest/node";
import type { WorkerTestContext } from "./context.ts";
import "./provided-context.ts";

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const script = fileURLToPath(new URL("./worker-services.ts", import.meta.url));
  const child = spawn(process.execPath, [script], { stdio: ["ignore", "pipe", "inherit"] });
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  const context = await new Promise<WorkerTestContext>((resolve, reject) => {
    let buffer = "";
    child.stdout.on("data", (chunk: Buffer) => {
      buffer += chunk.toString("utf8");
      const line = buffer.split("\n").find((l) => l.startsWith("READY "));
      if (line) resolve(JSON.parse(line.slice(6)) as WorkerTestContext);
    });
    void exited.then((code) => reject(new Error(`worker test services exited with code ${code} before they were ready`)));
  });
  project.provide("bindings", context.bindings);
  project.provide("adminToken", context.adminToken);
  project.provide("keys", context.keys);
  project.provide("tenantId", context.tenantId);
  project.provide("otherTenantId", context.otherTenantId);
  project.provide("liveNodeId", context.liveNodeId);
  project.provide("liveBackplaneUrl", context.liveBackplaneUrl);
  project.provide("statsUrl", context.statsUrl);
  project.provide("hbNode", context.hbNode);
  project.provide("loraNodes", context.loraNodes);
  return async () => {
    child.kill("SIGTERM");
    await exited;
  };
}
