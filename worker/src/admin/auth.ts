import { createMiddleware } from "hono/factory";
import { bearerToken, hashApiKey, looksLikeApiKey } from "../auth/keys.ts";
import type { AppEnv } from "../env.ts";
import type { Deps } from "../platform/deps.ts";
import { ApiError } from "../errors.ts";
import { loadHotState } from "../platform/hot-state.ts";

/**
 * Who is calling the admin API: the operator (the `ADMIN_TOKEN` secret), who sees everything, or an
 * API key with the `admin` scope, which sees and changes only its own tenant.
 */
export type AdminActor =
  | { kind: "operator"; principal: string }
  | { kind: "tenant"; tenantId: string; principal: string };

/** Hono environment of the admin sub-app: the gateway's, plus the authenticated actor. */
export interface AdminEnv {
  Bindings: AppEnv["Bindings"];
  Variables: AppEnv["Variables"] & { actor: AdminActor };
}

/** The scope an API key needs to call the admin API. */
export const ADMIN_SCOPE = "admin";

/** How the admin token is named in `audit_logs.actor`. */
export const OPERATOR_PRINCIPAL = "admin-token";

/** The name recorded in `audit_logs.actor`: `admin-token`, `key:<id>` or (the dashboard's single sign-on) `user:<email>`. */
export function actorName(actor: AdminActor): string {
  return actor.principal;
}

const INVALID_MESSAGE =
  "Incorrect admin credentials. Send the ADMIN_TOKEN secret, or an API key with the admin scope, as 'Authorization: Bearer …'.";

async function sha256(value: string): Promise<ArrayBuffer> {
  return crypto.subtle.digest("SHA-256", new TextEncoder().encode(value));
}

/**
 * Compares the token with ADMIN_TOKEN through their SHA-256 digests, in constant time: the digests
 * always have the same length, so neither the token's length nor its first differing byte shows in
 * the answer time. An empty or unset ADMIN_TOKEN disables operator access.
 */
export async function isOperatorToken(token: string, adminToken: string | undefined): Promise<boolean> {
  if (!adminToken) return false;
  const [a, b] = await Promise.all([sha256(token), sha256(adminToken)]);
  return crypto.subtle.timingSafeEqual(a, b);
}

/**
 * Authenticates the admin API: 401 without credentials or with wrong ones, 403 for a valid key
 * without the admin scope (or of a suspended tenant). Keys are resolved like on /v1 (isolate,
 * Redis and the active-key set, then Postgres), so a revoked admin key stops working within
 * KEY_CACHE_ISOLATE_SECONDS and a bad one never reaches Postgres.
 */
export const requireAdmin = createMiddleware<AdminEnv>(async (c, next) => {
  const token = bearerToken(c.req.header("authorization"));
  if (!token) {
    throw new ApiError("missing_api_key", "The admin API needs 'Authorization: Bearer <ADMIN_TOKEN or an admin-scoped API key>'.");
  }
  c.set("actor", await adminActorOf(c.get("deps"), token));
  return next();
});

/**
 * Who `token` is on the admin API: the operator for ADMIN_TOKEN, else the tenant of an active,
 * admin-scoped API key (with its hash, for the dashboard's key sessions). Throws the 401/403 to answer.
 */
export async function adminActorOf(deps: Deps, token: string): Promise<AdminActor & { keyHash?: string }> {
  if (await isOperatorToken(token, deps.secrets.adminToken)) return { kind: "operator", principal: OPERATOR_PRINCIPAL };
  if (!looksLikeApiKey(token)) throw new ApiError("invalid_api_key", INVALID_MESSAGE);
  const keyHash = await hashApiKey(token);
  const state = await loadHotState(deps, keyHash);
  if (!state.key.found) throw new ApiError("invalid_api_key", INVALID_MESSAGE);
  const identity = state.key.identity;
  if (identity.revoked || (identity.expiresAt !== null && identity.expiresAt <= Date.now())) {
    throw new ApiError("invalid_api_key", INVALID_MESSAGE);
  }
  if (identity.tenantStatus !== "active") {
    throw new ApiError("tenant_suspended", "This organisation is suspended; its keys cannot use the admin API. Ask the operator to resume it.");
  }
  if (!identity.scopes.includes(ADMIN_SCOPE)) {
    throw new ApiError("permission_denied", "This API key does not have the admin scope. Create a key with scopes including \"admin\" to manage the tenant.");
  }
  return { kind: "tenant", tenantId: identity.tenantId, principal: `key:${identity.keyId}`, keyHash };
}
