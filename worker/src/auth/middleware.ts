import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { loadHotState } from "../platform/hot-state.ts";
import { auditEvent, auditOutboxKey, type AuditEvent } from "../audit/outbox.ts";
import { enqueue } from "../platform/outbox.ts";
import { bearerToken, hashApiKeyCached, looksLikeApiKey, visiblePrefix } from "./keys.ts";

// One message for unknown, malformed, revoked and expired keys, so a caller cannot tell which keys exist.
const INVALID_KEY_MESSAGE =
  "Incorrect API key provided. Check the key you are sending in the Authorization header (Bearer sk-sy-…); keys are shown once, at creation, and may have been revoked or expired.";

/**
 * The key a request presents: `Authorization: Bearer <key>`, else `x-api-key: <key>` (what Anthropic
 * clients and curl examples send; Claude Code may send both, and then the Authorization header wins).
 */
function presentedKey(authorization: string | undefined, xApiKey: string | undefined): string | null {
  return bearerToken(authorization) ?? (xApiKey?.trim() || null);
}

/**
 * Authenticates `Authorization: Bearer <key>` (or `x-api-key: <key>`) and loads the routing snapshot with it, from the
 * isolate or in one Redis round trip (platform/hot-state.ts); malformed and unknown keys never reach
 * Postgres. Sets `identity` and `routing`.
 */
export const requireApiKey = createMiddleware<AppEnv>(async (c, next) => {
  const token = presentedKey(c.req.header("authorization"), c.req.header("x-api-key"));
  // Every attempt is audited off the response path: key prefix (never more of the key), tenant, route, client IP, outcome.
  const event = (outcome: string, tenantId: string | null, keyId: string | null): AuditEvent =>
    auditEvent({
        actor: keyId ? `key:${keyId}` : "anonymous",
        action: outcome === "ok" ? "auth.success" : "auth.failure",
        targetType: "route",
        targetId: `${c.req.method} ${c.req.path}`,
        tenantId,
        success: outcome === "ok",
        details: {
          reason: outcome,
          keyPrefix: token && looksLikeApiKey(token) ? visiblePrefix(token) : null,
          clientIp: c.req.header("cf-connecting-ip") ?? null,
          requestId: c.get("deps").requestId,
        },
      });
  const queue = (e: AuditEvent) =>
    c.executionCtx.waitUntil(enqueue(c.get("deps").redis, auditOutboxKey(c.get("deps").settings.redisPrefix), e).catch((err: unknown) => c.get("deps").log("audit_queue_failed", { error: String(err) })));
  const audit = (outcome: string, tenantId: string | null, keyId: string | null) => queue(event(outcome, tenantId, keyId));
  if (!token) {
    audit("missing_key", null, null);
    throw new ApiError(
      "missing_api_key",
      "You didn't provide an API key. Send it in the Authorization header as 'Bearer sk-sy-…' (or in an x-api-key header).",
    );
  }
  // A token that cannot be a key is refused before any lookup: the key format is public, so its
  // answer time tells nothing; the body is the same as for every other bad key.
  if (!looksLikeApiKey(token)) {
    audit("malformed_key", null, null);
    throw new ApiError("invalid_api_key", INVALID_KEY_MESSAGE);
  }
  // The lookup is by hash, so no key is ever compared as a string; an unknown key costs one Redis
  // read (the active-key set), never a database query (platform/hot-state.ts).
  const state = await loadHotState(c.get("deps"), await hashApiKeyCached(token));
  if (!state.key.found) {
    audit("unknown_key", null, null);
    throw new ApiError("invalid_api_key", INVALID_KEY_MESSAGE);
  }
  const identity = state.key.identity;
  if (identity.revoked || (identity.expiresAt !== null && identity.expiresAt <= Date.now())) {
    audit(identity.revoked ? "revoked_key" : "expired_key", identity.tenantId, identity.keyId);
    throw new ApiError("invalid_api_key", INVALID_KEY_MESSAGE);
  }
  if (identity.tenantStatus !== "active") {
    audit("tenant_suspended", identity.tenantId, identity.keyId);
    throw new ApiError("tenant_suspended", "This organisation is suspended. Contact your administrator or settle the outstanding payment.");
  }
  c.set("authAudit", event("ok", identity.tenantId, identity.keyId));
  c.set("identity", identity);
  c.set("routing", state.routing);
  try {
    await next();
  } finally {
    const pending = c.get("authAudit");
    if (pending) queue(pending);
  }
});

/** Takes the pending successful-authentication audit event, to queue it in the handler's own Redis batch. */
export function takeAuthAudit(c: Context<AppEnv>): AuditEvent | null {
  const pending = c.get("authAudit");
  c.set("authAudit", null);
  return pending;
}
