import OpenAI from "openai";
import { afterEach, expect } from "vitest";
import { startSimEngine, type SimEngine, type SimOptions } from "../../backplane/src/sim/index.ts";

/**
 * Registers an afterEach that closes the engine the test started, and returns `start`, which
 * starts a simulated engine on a free port (instant by default: ttft and inter-token 0).
 */
export function useSimEngine(): (options?: Partial<SimOptions>) => Promise<SimEngine> {
  let engine: SimEngine | null = null;
  afterEach(async () => {
    await engine?.close();
    engine = null;
  });
  return async (options = {}) => {
    engine = await startSimEngine({ ttftMs: 0, interTokenMs: 0, ...options });
    return engine;
  };
}

/** The official client pointed at a simulated engine. */
export function simClient(sim: SimEngine): OpenAI {
  return new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: "x", maxRetries: 0 });
}

/** POSTs JSON to the engine. */
export function simPost(sim: SimEngine, path: string, body: unknown, init: RequestInit = {}): Promise<Response> {
  return fetch(`${sim.url}${path}`, {
    method: "POST",
    ...init,
    headers: { "content-type": "application/json", ...(init.headers as Record<string, string> | undefined) },
    body: JSON.stringify(body),
  });
}

/** Reads an SSE body into the `data:` payloads, checking every event is `data: …\n\n`. */
export async function sseEvents(res: Response): Promise<string[]> {
  const text = await res.text();
  expect(text.endsWith("\n\n")).toBe(true);
  return text
    .slice(0, -2)
    .split("\n\n")
    .map((event) => {
      expect(event.startsWith("data: ")).toBe(true);
      return event.slice("data: ".length);
    });
}
