import type { Context } from "hono";
import type { AppEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { readBody, serveProxy } from "../routes/proxy.ts";
import { profilesOf } from "./profiles.ts";

/** The profile routes: three named ones and the generic `/v1/agents/stream?type=<profile>`. */
export const PROFILE_ROUTES = {
  "/v1/voice/chat/completions": "voice",
  "/v1/copilot/completions": "copilot",
  "/v1/gui/chat/completions": "gui",
  "/v1/agents/stream": null,
} as const;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function listOf(names: Iterable<string>): string {
  return [...names].join(", ");
}

/**
 * Serves a request through an agent streaming profile (docs/streaming-profiles.md): the body of
 * /v1/chat/completions (or, on the copilot and agents routes, of /v1/completions: a `prompt` and no
 * `messages`), always streamed, cut and paced by the profile on the backplane. Everything else
 * (validation, limits, budgets, routing, metering) is the inference path's own (serveProxy).
 */
export function profileHandler(fixed: string | null) {
  return async (c: Context<AppEnv>): Promise<Response> => {
    const profiles = profilesOf(c.get("routing").snapshot);
    const name = fixed ?? c.req.query("type");
    if (name === undefined || name === "") {
      throw new ApiError("invalid_value", `Name the streaming profile with ?type=<profile>: ${listOf(profiles.keys())}.`, { param: "type" });
    }
    const profile = profiles.get(name);
    if (!profile) throw new ApiError("not_found", `There is no streaming profile '${name}'. The profiles are: ${listOf(profiles.keys())}.`, { param: "type" });
    const raw = await readBody(c, "chat");
    let body: unknown;
    try {
      body = JSON.parse(decoder.decode(raw));
    } catch {
      body = null;
    }
    // A body that is not a JSON object gets the chat route's own 400 from its validator.
    if (typeof body !== "object" || body === null || Array.isArray(body)) return serveProxy(c, "chat", raw, { profile });
    const fields = body as Record<string, unknown>;
    const completions = fixed !== "voice" && fixed !== "gui" && "prompt" in fields && !("messages" in fields);
    // Always a stream, whatever the client said.
    const bytes = fields.stream === true ? raw : (encoder.encode(JSON.stringify({ ...fields, stream: true })).buffer as ArrayBuffer);
    return serveProxy(c, completions ? "completions" : "chat", bytes, { profile });
  };
}
