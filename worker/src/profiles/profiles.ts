import { PROFILE_FIELD, type ProfileWire } from "../../../schema/contracts/stream-profile.ts";
import { ApiError } from "../errors.ts";
import type { ProxyRequest } from "../proxy/validate.ts";
import type { RoutingSnapshot } from "../routing/snapshot.ts";
import type { StreamProfile } from "./types.ts";

/** The built-in profiles (docs/streaming-profiles.md); an operator's row of the same name overrides one. */
export const BUILTIN_PROFILES: readonly StreamProfile[] = [
  { name: "voice", chunkTokens: 1, timeoutMs: 30_000, bufferTokens: 50, intervalMs: 10 },
  { name: "copilot", chunkTokens: 5, timeoutMs: 60_000, bufferTokens: 200, intervalMs: 50 },
  { name: "gui", chunkTokens: 10, timeoutMs: 120_000, bufferTokens: 500, intervalMs: 100 },
];

const merged = new WeakMap<RoutingSnapshot, Map<string, StreamProfile>>();

/** Every profile the gateway serves: the built-ins, overridden or joined by the operators' (cached in the routing snapshot). */
export function profilesOf(snapshot: RoutingSnapshot): Map<string, StreamProfile> {
  let profiles = merged.get(snapshot);
  if (!profiles) {
    profiles = new Map(BUILTIN_PROFILES.map((p) => [p.name, p]));
    for (const p of snapshot.streamProfiles ?? []) profiles.set(p.name, p);
    merged.set(snapshot, profiles);
  }
  return profiles;
}

/**
 * The request body the backplane gets for a profiled stream: the validated upstream body (a JSON
 * object) with the profile added under PROFILE_FIELD (stream-profile.ts), which the backplane
 * removes before the engine sees the body.
 */
export function withProfile(upstreamBody: string, profile: StreamProfile, promptTokensEstimate: number): string {
  const wire: ProfileWire = {
    name: profile.name,
    chunk_tokens: profile.chunkTokens,
    interval_ms: profile.intervalMs,
    buffer_tokens: profile.bufferTokens,
    timeout_ms: profile.timeoutMs,
    prompt_tokens_estimate: promptTokensEstimate,
  };
  const end = upstreamBody.lastIndexOf("}");
  const open = upstreamBody.indexOf("{");
  const empty = upstreamBody.slice(open + 1, end).trim() === "";
  return `${upstreamBody.slice(0, end)}${empty ? "" : ","}"${PROFILE_FIELD}":${JSON.stringify(wire)}}`;
}

/**
 * A validated request made a profiled stream: one choice only (the re-chunker cuts one choice's
 * deltas; `n`, `best_of` or a list of prompts would interleave several), and the profile in the body.
 */
export function profiledRequest(req: ProxyRequest, profile: StreamProfile): ProxyRequest {
  if (req.output.prompts > 1 || req.output.perPrompt > 1) {
    const param = req.output.prompts > 1 ? "prompt" : "n";
    throw new ApiError("invalid_value", `A streaming profile serves one choice: send one prompt with n = 1 (and no best_of), or use the plain route for several.`, { param });
  }
  if (typeof req.upstreamBody !== "string") throw new ApiError("invalid_value", "A streaming profile takes a JSON body.");
  return { ...req, stream: true, upstreamBody: withProfile(req.upstreamBody, profile, req.promptTokensEstimate) };
}
