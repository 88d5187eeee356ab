import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { loadHotState } from "../platform/hot-state.ts";
import { bearerToken, hashApiKey, looksLikeApiKey } from "./keys.ts";

const INVALID_KEY_MESSAGE =
  "Incorrect API key provided. Check the key you are sending in the Authorization header (Bearer sk-sy-…); keys are shown once, at creation.";

/**
 * Authenticates `Authorization: Bearer <key>` and loads the routing snapshot with it, from the
 * isolate or in one Redis round trip (platform/hot-state.ts). Sets `identity` and `routing`.
 */
export const requireApiKey = createMiddleware<AppEnv>(async (c, next) => {
  const token = bearerToken(c.req.header("authorization"));
  if (!token) {
    throw new ApiError(
      "missing_api_key",
      "You didn't provide an API key. Send it in the Authorization header as 'Bearer sk-sy-…'.",
    );
  }
  if (!looksLikeApiKey(token)) throw new ApiError("invalid_api_key", INVALID_KEY_MESSAGE);
  const hash = await hashApiKey(token);
  const state = await loadHotState(
    {
      redis: c.var.redis,
      settings: c.var.settings,
      databaseUrl: c.env.DATABASE_URL,
      waitUntil: (p) => c.executionCtx.waitUntil(p),
      log: c.var.log,
    },
    hash,
  );
  if (!state.key.found) throw new ApiError("invalid_api_key", INVALID_KEY_MESSAGE);
  const identity = state.key.identity;
  if (identity.revoked) throw new ApiError("invalid_api_key", "This API key has been revoked. Create a new key.");
  if (identity.expiresAt !== null && identity.expiresAt <= Date.now()) {
    throw new ApiError("invalid_api_key", "This API key has expired. Create a new key or rotate it.");
  }
  if (identity.tenantStatus !== "active") {
    throw new ApiError("tenant_suspended", "This organisation is suspended. Contact your administrator or settle the outstanding payment.");
  }
  c.set("identity", identity);
  c.set("routing", state.routing);
  await next();
});
