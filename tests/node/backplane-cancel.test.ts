import { connect } from "node:net";
import { describe, expect, it } from "vitest";
import { NODE_HEADER } from "../../schema/contracts/signing.ts";
import { gatewayHeaders, signedPost, TEST_NODE, useBackplane, waitUntil } from "../support/backplane-harness.ts";

const bp = useBackplane();
const PATH = "/v1/chat/completions";
// About 3 000 prompt tokens at 2 ms each: a six-second prefill before the first token.
const longPrompt = (stream: boolean) => ({ model: "sim-llama-8b", stream, max_tokens: 4, messages: [{ role: "user", content: "lorem ipsum dolor sit amet ".repeat(600) }] });

/** The simulated engine's running gauge and abort counter for the chat model. */
async function engineState(simUrl: string): Promise<{ running: number; aborted: number }> {
  const text = await (await fetch(`${simUrl}/metrics`)).text();
  const value = (prefix: string) => Number(text.split("\n").find((l) => l.startsWith(prefix))?.split(" ").at(-1) ?? Number.NaN);
  return {
    running: value('vllm:num_requests_running{model_name="sim-llama-8b"'),
    aborted: value('vllm:request_success_total{model_name="sim-llama-8b",engine="0",finished_reason="abort"}'),
  };
}

describe("a gateway that cancels before the first token", () => {
  for (const stream of [true, false]) {
    it(`frees the engine within a second when the gateway aborts during a long prefill (stream: ${stream})`, async () => {
      const sim = await bp.sim({ ttftMs: 1, prefillMsPerToken: 2 });
      const daemon = await bp.daemon([{ kind: "sim", url: sim.url }]);
      const gateway = new AbortController();
      const answer = signedPost(daemon.url, PATH, longPrompt(stream), { signal: gateway.signal }).catch((err: unknown) => err);
      await waitUntil(async () => (await engineState(sim.url)).running === 1, 3_000, "engine running the request");
      gateway.abort();
      expect(await answer).toBeInstanceOf(Error);
      const cancelledAt = Date.now();
      await waitUntil(async () => (await engineState(sim.url)).aborted === 1, 1_000, "engine abort");
      expect(await engineState(sim.url)).toEqual({ running: 0, aborted: 1 });
      expect(Date.now() - cancelledAt).toBeLessThan(1_000);
      expect(daemon.pool.reports()[0]?.inFlight).toBe(0);
    });

    it(`frees the engine when the gateway hangs up while the backplane is still reading and verifying (stream: ${stream})`, async () => {
      const sim = await bp.sim({ ttftMs: 1, prefillMsPerToken: 2 });
      const daemon = await bp.daemon([{ kind: "sim", url: sim.url }]);
      const raw = JSON.stringify(longPrompt(stream));
      const headers = { ...(await gatewayHeaders(PATH, raw)), [NODE_HEADER]: TEST_NODE, "content-type": "application/json", "content-length": String(Buffer.byteLength(raw)) };
      const { hostname, port } = new URL(daemon.url);
      const socket = connect(Number(port), hostname);
      await new Promise((resolve) => socket.once("connect", resolve));
      const head = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("");
      // The whole request, then at once a hang-up: the close arrives before the backplane has called the engine.
      socket.write(`POST ${PATH} HTTP/1.1\r\nhost: ${hostname}\r\n${head}\r\n${raw}`);
      socket.destroy();
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      const state = await engineState(sim.url);
      expect(state.running).toBe(0);
      expect(daemon.pool.reports()[0]?.inFlight).toBe(0);
    });
  }
});
