import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { signedHeaders, signedPool } from "../../bench/lib/signed.ts";
import { runWrk, wrkAvailable } from "../../bench/lib/wrk.ts";
import { startSimEngine, type SimEngine } from "../../backplane/src/sim/index.ts";
import { startBenchBackplane } from "../support/bench-backplane.ts";
import { NODE_HEADER } from "../../schema/contracts/signing.ts";

// The benchmark's backplane-alone target under wrk: the backplane accepts each signature once
// (replay protection), so wrk sends a pool of requests signed just before the run, each once.

const PATH = "/v1/chat/completions";
const MASTER_SECRET = "m".repeat(64);
const NODE_ID = "bench-pool-1";
const BODY = JSON.stringify({ model: "sim-llama-8b", messages: [{ role: "user", content: "Say something." }] });

let sim: SimEngine | null = null;
let stopBackplane: (() => Promise<void>) | null = null;
let backplaneUrl = "";

beforeEach(async () => {
  sim = await startSimEngine({ ttftMs: 0, interTokenMs: 0, outputTokens: 16 });
  const backplane = await startBenchBackplane({ masterSecret: MASTER_SECRET, nodeId: NODE_ID, engineUrl: sim.url });
  backplaneUrl = backplane.url;
  stopBackplane = () => backplane.stop();
}, 30_000);

afterEach(async () => {
  await stopBackplane?.();
  stopBackplane = null;
  await sim?.close();
  sim = null;
});

const wrk = (extra: Partial<Parameters<typeof runWrk>[0]>) =>
  runWrk({ url: backplaneUrl + PATH, method: "POST", headers: { "content-type": "application/json", [NODE_HEADER]: NODE_ID }, body: BODY, connections: 4, threads: 2, durationSec: 1, ...extra });

describe.skipIf(!wrkAvailable())("wrk against a backplane", () => {
  it("gets 200 for every request when each carries its own pre-signed nonce", async () => {
    const pool = await signedPool({ masterSecret: MASTER_SECRET, nodeId: NODE_ID, path: PATH, body: BODY, count: 30_000 });
    const result = await wrk({ pool });
    expect(result.requests).toBeGreaterThan(50);
    expect(result).toMatchObject({ non2xx: 0, socketErrors: 0, poolExhausted: 0, statuses: {} });
  });

  it("stops sending, without replaying a signature, when the pool is smaller than the run, and says so", async () => {
    const pool = await signedPool({ masterSecret: MASTER_SECRET, nodeId: NODE_ID, path: PATH, body: BODY, count: 40 });
    const result = await wrk({ pool, durationSec: 3 });
    expect(result.poolExhausted).toBe(2);
    expect(result.requests).toBeGreaterThan(0);
    expect(result.requests).toBeLessThanOrEqual(40);
    expect(result).toMatchObject({ non2xx: 0, socketErrors: 0 });
  });

  it("gets 401 for every request after the first when one signed header set is replayed (why the pool exists)", async () => {
    const headers = await signedHeaders({ masterSecret: MASTER_SECRET, nodeId: NODE_ID, path: PATH, body: BODY });
    const result = await wrk({ headers, threads: 1, connections: 1 });
    expect(result.requests).toBeGreaterThan(1);
    expect(result.statuses["401"]).toBe(result.requests - 1);
  });
});
