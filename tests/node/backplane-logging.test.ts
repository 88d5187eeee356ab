import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { parseConfig } from "../../backplane/src/config.ts";
import { startDaemon, type Daemon } from "../../backplane/src/daemon.ts";
import { EnginePool } from "../../backplane/src/engines/pool.ts";
import { createLog } from "../../backplane/src/log.ts";
import { TEST_NODE, TEST_SECRET, useBackplane, waitUntil } from "../support/backplane-harness.ts";

const bp = useBackplane();
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

function capture() {
  const lines: { level: string; event: string }[] = [];
  return { lines, log: createLog("warn", (line) => lines.push(JSON.parse(line) as { level: string; event: string })) };
}

/** A loopback port with nothing listening on it. */
async function closedPortUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

describe("--log-level warn", () => {
  it("prints a warning a daemon's component raises (metadata server unreachable) and drops its info lines", async () => {
    const sim = await bp.sim();
    const { lines, log } = capture();
    const config = parseConfig({
      nodeId: TEST_NODE, region: "test", secret: TEST_SECRET, port: 0, logLevel: "warn",
      engines: [{ kind: "sim", url: sim.url }], spotAws: true, awsMetadataUrl: await closedPortUrl(), spotPollIntervalMs: 100,
    });
    const daemon: Daemon = await startDaemon(config, { log });
    closers.push(() => daemon.close());
    await waitUntil(() => lines.some((l) => l.event === "spot_metadata_unreachable"), 3_000, "spot_metadata_unreachable logged");
    expect(lines.find((l) => l.event === "spot_metadata_unreachable")?.level).toBe("warn");
    expect(lines.some((l) => l.event === "backplane_listening" || l.event === "spot_watcher_started")).toBe(false);
    expect(lines.every((l) => l.level === "warn" || l.level === "error")).toBe(true);
  });

  it("prints an engine pool error as an error, and not the pool's info events", async () => {
    const sim = await bp.sim();
    const { lines, log } = capture();
    const pool = new EnginePool({
      engines: parseConfig({ nodeId: TEST_NODE, region: "test", secret: TEST_SECRET, engines: [{ kind: "sim", url: sim.url }] }).engines,
      settings: { healthIntervalMs: 60_000, loadIntervalMs: 60_000, breakerFailures: 3, breakerOpenMs: 1_000 },
      log,
      onChange: () => {
        throw new Error("listener broke");
      },
    });
    closers.push(() => pool.close());
    await pool.start();
    expect(lines).toContainEqual(expect.objectContaining({ level: "error", event: "engine.on_change_failed" }));
    // engine.health (healthy) and engine.models are info: not printed at warn.
    expect(lines.some((l) => l.event === "engine.health" || l.event === "engine.models")).toBe(false);
  });
});
