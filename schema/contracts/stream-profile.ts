// Agent streaming profiles (docs/streaming-profiles.md) between the gateway and the backplane.
// The gateway puts the profile in the signed request body under PROFILE_FIELD; the backplane
// removes it before the engine sees the body, asks the engine for running usage, and re-chunks the
// engine's stream to the profile (backplane/src/proxy/rechunk.ts).

/** The body field that carries the profile to the backplane (never sent to the engine). */
export const PROFILE_FIELD = "switchyard_profile";

/** The profile as it travels in the body. */
export interface ProfileWire {
  name: string;
  /** Completion tokens per content chunk. */
  chunk_tokens: number;
  /** Least time between two content chunks, ms. */
  interval_ms: number;
  /** Tokens held between engine and client before the engine is paused. */
  buffer_tokens: number;
  /** The whole stream's time limit, ms from the node's receipt of the request. */
  timeout_ms: number;
  /** The gateway's estimate of the prompt's tokens: metered on a timeout when the engine never reported its count. */
  prompt_tokens_estimate: number;
}

/** Bounds an operator's profile must respect (the admin API refuses others; the backplane clamps). */
export const PROFILE_BOUNDS = {
  chunkTokens: { min: 1, max: 1000 },
  intervalMs: { min: 0, max: 10_000 },
  bufferTokens: { min: 1, max: 100_000 },
  timeoutMs: { min: 1000, max: 3_600_000 },
} as const;

/**
 * The SSE comment the backplane writes in each re-chunked event that carries tokens, before its
 * `data` line: `: tokens=N`. Clients ignore comments; the gateway's usage tap (usage-tap.ts) counts
 * N delivered tokens for the event, so a stream cut short is metered exactly even though one event
 * carries several tokens.
 */
export const TOKENS_COMMENT = " tokens=";

/** The error code of the in-band event that ends a stream at its profile's time limit. */
export const PROFILE_TIMEOUT_CODE = "stream_timeout";

function intIn(value: unknown, min: number, max: number): number | null {
  return typeof value === "number" && Number.isInteger(value) && value >= min && value <= max ? value : null;
}

/** Reads a profile from a request body's field; null when absent or malformed. */
export function parseProfileWire(raw: unknown): ProfileWire | null {
  if (typeof raw !== "object" || raw === null) return null;
  const p = raw as Record<string, unknown>;
  const b = PROFILE_BOUNDS;
  const chunk = intIn(p.chunk_tokens, b.chunkTokens.min, b.chunkTokens.max);
  const interval = intIn(p.interval_ms, b.intervalMs.min, b.intervalMs.max);
  const buffer = intIn(p.buffer_tokens, b.bufferTokens.min, b.bufferTokens.max);
  const timeout = intIn(p.timeout_ms, b.timeoutMs.min, b.timeoutMs.max);
  const estimate = intIn(p.prompt_tokens_estimate, 0, Number.MAX_SAFE_INTEGER);
  if (typeof p.name !== "string" || chunk === null || interval === null || buffer === null || timeout === null || estimate === null) return null;
  return { name: p.name, chunk_tokens: chunk, interval_ms: interval, buffer_tokens: Math.max(buffer, chunk), timeout_ms: timeout, prompt_tokens_estimate: estimate };
}
