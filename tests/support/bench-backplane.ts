/**
 * A backplane started as the benchmark and the local stack start one (a child process, no gateway,
 * so no heartbeats) in front of one engine, with its secret derived from `masterSecret` like the
 * gateway derives it: what the benchmark's signed-request tests send to.
 */
import { join } from "node:path";
import { nodeSecret } from "../../bench/lib/signed.ts";
import { freePort, waitForHttp } from "../../dev/ports.ts";
import { startChild } from "../../dev/processes.ts";

const ROOT = join(import.meta.dirname, "../..");

/** Starts the backplane and waits for its /health; `stop()` ends it. */
export async function startBenchBackplane(opts: { masterSecret: string; nodeId: string; engineUrl: string }): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const backplane = startChild("backplane", ["backplane/src/main.ts", "start"], {
    cwd: ROOT,
    echo: false,
    env: {
      BACKPLANE_NODE_ID: opts.nodeId,
      BACKPLANE_REGION: "bench",
      BACKPLANE_SECRET: await nodeSecret(opts.masterSecret, opts.nodeId),
      BACKPLANE_HOST: "127.0.0.1",
      BACKPLANE_PORT: String(port),
      BACKPLANE_ENGINES: `kind=sim,id=sim-0,url=${opts.engineUrl}`,
      BACKPLANE_LOG_LEVEL: "error",
    },
  });
  try {
    await waitForHttp(`${url}/health`, 15_000, () => backplane.alive());
  } catch (err) {
    await backplane.stop();
    throw err;
  }
  return { url, stop: () => backplane.stop() };
}
