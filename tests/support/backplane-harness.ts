import { afterEach } from "vitest";
import { parseConfig, type RawConfig } from "../../backplane/src/config.ts";
import { startDaemon, type Daemon } from "../../backplane/src/daemon.ts";
import { startSimEngine, type SimEngine, type SimOptions } from "../../backplane/src/sim/index.ts";
import { NODE_HEADER, importSigningKey, signRequest } from "../../schema/contracts/signing.ts";

/** The node secret the backplane tests use. */
export const TEST_SECRET = "t".repeat(64);
/** The node id the backplane tests use. */
export const TEST_NODE = "gpu-test-1";

/**
 * Starts simulated engines and backplane daemons for one test and closes them all afterwards
 * (registered with afterEach).
 */
export function useBackplane() {
  const closers: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close().catch(() => {});
  });
  return {
    /** A simulated engine (fast by default); `port` lets a test restart one where it was. */
    async sim(options: Partial<SimOptions> = {}): Promise<SimEngine> {
      const sim = await startSimEngine({ ttftMs: 1, interTokenMs: 1, ...options });
      closers.push(() => sim.close());
      return sim;
    },
    /** A daemon in front of `engines`, with quick probes and no gateway unless given. */
    async daemon(engines: RawConfig["engines"], overrides: RawConfig = {}): Promise<Daemon> {
      const daemon = await startDaemon(
        parseConfig({ nodeId: TEST_NODE, region: "test", secret: TEST_SECRET, port: 0, engines, healthIntervalMs: 100, loadIntervalMs: 100, logLevel: "error", ...overrides }),
      );
      closers.push(() => daemon.close());
      return daemon;
    },
    /** Registers another clean-up. */
    defer(close: () => Promise<void>): void {
      closers.push(close);
    },
  };
}

/** The signature headers the gateway would put on a POST of `raw` to `path` (fresh nonce each call). */
export async function gatewayHeaders(path: string, raw: string, method = "POST"): Promise<Record<string, string>> {
  return { ...(await signRequest(await importSigningKey(TEST_SECRET), method, path, raw)) };
}

/** POSTs a body to a backplane, signed as the gateway would. */
export async function signedPost(baseUrl: string, path: string, body: unknown, init: { signal?: AbortSignal } = {}): Promise<Response> {
  const raw = JSON.stringify(body);
  const headers = await gatewayHeaders(path, raw);
  return fetch(baseUrl + path, {
    method: "POST",
    headers: { "content-type": "application/json", [NODE_HEADER]: TEST_NODE, ...headers },
    body: raw,
    signal: init.signal,
  });
}

/** Polls until `check` holds (small interval; fails after `timeoutMs`). */
export async function waitUntil(check: () => boolean | Promise<boolean>, timeoutMs = 5_000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} not reached within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
