/** @jsxImportSource hono/jsx */
/**
 * Signing in and out: the admin token or an admin-scoped API key (a form), or the tenant's single
 * sign-on (sso.tsx). The sign-in forms carry a login CSRF token (double-submit cookie), failed
 * attempts are audited and limited per client address, and a session is only ever created by POST.
 */
import { Hono, type Context } from "hono";
import { getCookie } from "hono/cookie";
import { auditLogs } from "../../../schema/tables/index.ts";
import { adminActorOf } from "../admin/auth.ts";
import { newId } from "../admin/store.ts";
import type { AppEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { formOf, redirectWith, safeNext, takeFlash } from "./http.ts";
import { clearHostCookie, endSession, loadSession, randomToken, sameSecret, SESSION_COOKIE, setHostCookie, startSession } from "./session.ts";
import { BASE, Page } from "./ui.tsx";

/** The login CSRF cookie (double submit: the form must echo it). */
export const LOGIN_COOKIE = "__Host-switchyard_login";
/** Failed sign-ins one client address may make per minute before the form answers 429. */
const FAILED_SIGN_INS_PER_MINUTE = 10;

/** The sign-in page (also answers a signed-in user, who is sent on). */
export async function loginPage(c: Context<AppEnv>, status: 200 | 400 | 401 | 403 | 429 = 200, error?: string): Promise<Response> {
  const loginToken = randomToken();
  setHostCookie(c, LOGIN_COOKIE, loginToken, 3600);
  const next = safeNext(c.req.query("next"));
  const flash = error ? { kind: "error" as const, text: error } : takeFlash(c);
  return c.html(
    <Page title="Sign in" session={null} flash={flash}>
      <div class="login">
        <h1>Sign in to Switchyard</h1>
        <section aria-labelledby="sso-title">
          <h2 id="sso-title">Single sign-on</h2>
          <form method="post" action={`${BASE}/login/sso`} class="stack">
            <input type="hidden" name="_login" value={loginToken} />
            <input type="hidden" name="next" value={next} />
            <label>
              Work email
              <input type="email" name="email" autocomplete="email" required />
            </label>
            <button type="submit">Continue with single sign-on</button>
          </form>
        </section>
        <section aria-labelledby="token-title">
          <h2 id="token-title">Admin token or admin API key</h2>
          <form method="post" action={`${BASE}/login`} class="stack">
            <input type="hidden" name="_login" value={loginToken} />
            <input type="hidden" name="next" value={next} />
            <label>
              Token or key
              <input type="password" name="token" autocomplete="current-password" required />
            </label>
            <button type="submit">Sign in</button>
          </form>
          <p class="muted">The operator's ADMIN_TOKEN sees every tenant; an API key with the admin scope manages its own tenant.</p>
        </section>
      </div>
    </Page>,
    status,
  );
}

/** True when the form echoes the login cookie (a cross-site form cannot read it). */
export async function loginTokenOk(c: Context<AppEnv>, form: Record<string, string>): Promise<boolean> {
  const cookie = getCookie(c, LOGIN_COOKIE);
  return cookie !== undefined && form._login !== undefined && (await sameSecret(cookie, form._login));
}

// Cloudflare sets CF-Connecting-IP (a client cannot); elsewhere every attempt shares one bucket.
function clientAddress(c: Context<AppEnv>): string {
  return c.req.header("cf-connecting-ip") ?? "unknown";
}

function limitKey(c: Context<AppEnv>): string {
  return `${c.get("deps").settings.redisPrefix}dash:sign-in-failures:${clientAddress(c)}:${Math.floor(Date.now() / 60_000)}`;
}

/**
 * False when this client address failed to sign in FAILED_SIGN_INS_PER_MINUTE times this minute.
 * Fails open when Redis does not answer (signing in must work in an outage; the audit log still
 * records every failure).
 */
export async function underSignInLimit(c: Context<AppEnv>): Promise<boolean> {
  const deps = c.get("deps");
  try {
    return (Number(await deps.redis.get<number>(limitKey(c))) || 0) < FAILED_SIGN_INS_PER_MINUTE;
  } catch (err) {
    deps.log("redis_unavailable", { during: "dashboard_sign_in_limit", error: String(err) });
    return true;
  }
}

async function countFailure(c: Context<AppEnv>): Promise<void> {
  const deps = c.get("deps");
  const key = limitKey(c);
  try {
    await deps.redis.pipeline().incr(key).expire(key, 120).exec();
  } catch (err) {
    deps.log("redis_unavailable", { during: "dashboard_sign_in_limit", error: String(err) });
  }
}

/** Audits a refused sign-in (the credential is never recorded). */
export async function auditFailedSignIn(c: Context<AppEnv>, method: string, reason: string, tenantId: string | null, details: Record<string, unknown> = {}): Promise<void> {
  await countFailure(c);
  await c.get("deps").db((db) =>
    db.insert(auditLogs).values({
      id: newId("aud"),
      actor: "anonymous",
      action: "dashboard.sign_in",
      targetType: "dashboard_session",
      targetId: "-",
      tenantId,
      success: false,
      details: { method, reason, address: clientAddress(c), ...details },
    }),
  );
}

/** The sign-in and sign-out routes (mounted at /dashboard, before the session check). */
export const loginRoutes = new Hono<AppEnv>()
  .get("/login", async (c) => {
    if (await loadSession(c)) return c.redirect(safeNext(c.req.query("next")), 303);
    return loginPage(c);
  })
  .post("/login", async (c) => {
    const form = await formOf(c);
    if (!(await loginTokenOk(c, form))) return loginPage(c, 403, "The sign-in form expired or came from another site. Sign in again from this page.");
    if (!(await underSignInLimit(c))) return loginPage(c, 429, "Too many failed sign-ins from your address. Wait a minute, then try again.");
    const token = (form.token ?? "").trim();
    let actor;
    try {
      actor = await adminActorOf(c.get("deps"), token);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      await auditFailedSignIn(c, "token_or_key", err.code, null);
      return loginPage(c, err.status === 403 ? 403 : 401, err.status === 403 ? err.message : "That is neither the admin token nor an active API key with the admin scope.");
    }
    const { keyHash, ...who } = actor;
    await startSession(c, { actor: who, role: "admin", method: who.kind === "operator" ? "token" : "key", keyHash: keyHash ?? null });
    return c.redirect(safeNext(form.next), 303);
  })
  .post("/logout", async (c) => {
    const session = await loadSession(c);
    const form = await formOf(c);
    // Signing out needs the session's CSRF token too: a cross-site form must not sign users out.
    if (session && form._csrf !== undefined && (await sameSecret(form._csrf, session.csrf))) {
      await endSession(c.get("deps"), session.id, session.actor.principal, session.actor.kind === "tenant" ? session.actor.tenantId : null, "signed_out");
      clearHostCookie(c, SESSION_COOKIE);
    } else if (session) {
      return c.redirect(BASE, 303);
    }
    return redirectWith(c, `${BASE}/login`, { kind: "ok", text: "You are signed out." });
  });
