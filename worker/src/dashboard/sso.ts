/**
 * Single sign-on to the dashboard with a tenant's OpenID Connect issuer (authorization code flow with
 * PKCE, state and nonce; oauth4webapi). The user gives their work email; the tenants whose SSO admits
 * it (an invitation for the address, or its verified domain in the tenant's allowed domains) are
 * offered; the issuer authenticates; the callback checks the ID token (issuer, audience, expiry,
 * nonce and signature against the issuer's keys) and that the email is verified, then starts a
 * session with the invitation's role (or the domain's). Refusals are audited.
 */
import { and, arrayContains, eq, inArray, or, sql } from "drizzle-orm";
import { Hono, type Context } from "hono";
import { getCookie, setCookie } from "hono/cookie";
import * as oauth from "oauth4webapi";
import { ssoConfigs, ssoInvitations, tenants } from "../../../schema/tables/index.ts";
import type { AppEnv } from "../env.ts";
import { formOf, safeNext } from "./http.ts";
import { auditFailedSignIn, loginPage, loginTokenOk, underSignInLimit } from "./login.tsx";
import { clearHostCookie, startSession, type DashboardRole } from "./session.ts";
import { acceptableIssuer, redirectUriOf } from "./sso-admin.ts";
import { openClientSecret, signState, verifyState } from "./sso-crypto.ts";
import { ssoChoicePage, ssoContinuePage } from "./sso-pages.tsx";

/** The SSO state cookie. SameSite=Lax: it must come back on the issuer's redirect (a cross-site GET). */
const STATE_COOKIE = "__Host-switchyard_sso";
const STATE_TTL_MS = 10 * 60_000;
/** Deadline of each call to the issuer (discovery, token, keys). */
const ISSUER_TIMEOUT_MS = 10_000;

interface SsoState {
  tenant: string;
  state: string;
  nonce: string;
  verifier: string;
  next: string;
  exp: number;
}

/** A tenant whose SSO admits an address. */
export interface SsoCandidate {
  tenantId: string;
  tenantName: string;
}

function emailDomain(email: string): string {
  return email.slice(email.lastIndexOf("@") + 1);
}

/** The active tenants whose single sign-on admits `email` (invited, or of an allowed domain). */
export async function candidatesFor(c: Context<AppEnv>, email: string): Promise<SsoCandidate[]> {
  return c.get("deps").db(async (db) => {
    const invited = db.select({ tenantId: ssoInvitations.tenantId }).from(ssoInvitations).where(eq(ssoInvitations.email, email));
    const rows = await db
      .select({ tenantId: tenants.id, tenantName: tenants.name })
      .from(ssoConfigs)
      .innerJoin(tenants, eq(tenants.id, ssoConfigs.tenantId))
      .where(and(eq(tenants.status, "active"), or(arrayContains(ssoConfigs.allowedDomains, [emailDomain(email)]), inArray(ssoConfigs.tenantId, invited))));
    return rows;
  });
}

// Discovery documents, per issuer, for a few minutes (an isolate signs in many users of one issuer).
const discovered = new Map<string, { as: oauth.AuthorizationServer; until: number }>();

function insecure(issuer: string): boolean {
  return new URL(issuer).protocol === "http:";
}

async function authorizationServer(issuer: string): Promise<oauth.AuthorizationServer> {
  const hit = discovered.get(issuer);
  if (hit && hit.until > Date.now()) return hit.as;
  const url = new URL(issuer);
  const res = await oauth.discoveryRequest(url, { algorithm: "oidc", signal: AbortSignal.timeout(ISSUER_TIMEOUT_MS), [oauth.allowInsecureRequests]: insecure(issuer) });
  const as = await oauth.processDiscoveryResponse(url, res);
  discovered.set(issuer, { as, until: Date.now() + 5 * 60_000 });
  return as;
}

async function configOf(c: Context<AppEnv>, tenantId: string) {
  const rows = await c.get("deps").db((db) =>
    db
      .select({ config: ssoConfigs, tenantStatus: tenants.status })
      .from(ssoConfigs)
      .innerJoin(tenants, eq(tenants.id, ssoConfigs.tenantId))
      .where(eq(ssoConfigs.tenantId, tenantId)),
  );
  const row = rows[0];
  return row && row.tenantStatus === "active" && acceptableIssuer(row.config.issuer) ? row.config : null;
}

/** Sends the browser to the tenant's issuer. */
async function startSso(c: Context<AppEnv>, tenantId: string, email: string | undefined, next: string): Promise<Response> {
  const config = await configOf(c, tenantId);
  if (!config) return loginPage(c, 400, "That organisation has no single sign-on. Sign in with a token or ask its admin.");
  let as: oauth.AuthorizationServer;
  try {
    as = await authorizationServer(config.issuer);
  } catch (err) {
    c.get("deps").log("dashboard_sso_discovery_failed", { tenantId, issuer: config.issuer, error: String(err) });
    return loginPage(c, 400, `The identity provider ${config.issuer} did not answer its discovery document. Try again later, or ask your admin to check the issuer URL.`);
  }
  if (!as.authorization_endpoint) return loginPage(c, 400, "The identity provider has no authorization endpoint. Ask your admin to check the issuer URL.");
  const st: SsoState = { tenant: tenantId, state: oauth.generateRandomState(), nonce: oauth.generateRandomNonce(), verifier: oauth.generateRandomCodeVerifier(), next, exp: Date.now() + STATE_TTL_MS };
  const url = new URL(as.authorization_endpoint);
  url.searchParams.set("client_id", config.clientId);
  url.searchParams.set("redirect_uri", redirectUriOf(c.req.url));
  url.searchParams.set("response_type", "code");
  url.searchParams.set("scope", "openid email profile");
  url.searchParams.set("code_challenge", await oauth.calculatePKCECodeChallenge(st.verifier));
  url.searchParams.set("code_challenge_method", "S256");
  url.searchParams.set("state", st.state);
  url.searchParams.set("nonce", st.nonce);
  if (email) url.searchParams.set("login_hint", email);
  setCookie(c, STATE_COOKIE, await signState(c.get("deps").secrets.dashboard, st), { path: "/", httpOnly: true, secure: true, sameSite: "Lax", maxAge: STATE_TTL_MS / 1000 });
  return c.redirect(url.toString(), 302);
}

function isState(v: unknown): v is SsoState {
  const s = v as Partial<SsoState> | null;
  return !!s && typeof s.tenant === "string" && typeof s.state === "string" && typeof s.nonce === "string" && typeof s.verifier === "string" && typeof s.next === "string" && typeof s.exp === "number";
}

/** Who the tenant's SSO admits `email` as: the invitation's role, else the domain's, else null. */
async function roleFor(c: Context<AppEnv>, config: typeof ssoConfigs.$inferSelect, email: string): Promise<DashboardRole | null> {
  const invitation = await c.get("deps").db((db) =>
    db.select().from(ssoInvitations).where(and(eq(ssoInvitations.tenantId, config.tenantId), eq(ssoInvitations.email, email))),
  );
  if (invitation[0]) return invitation[0].role;
  return config.allowedDomains.includes(emailDomain(email)) ? config.domainRole : null;
}

/** The sign-in routes of single sign-on, mounted at /dashboard/login/sso. */
export const ssoRoutes = new Hono<AppEnv>()
  // Step 1: the email, from the sign-in page.
  .post("/", async (c) => {
    const form = await formOf(c);
    if (!(await loginTokenOk(c, form))) return loginPage(c, 403, "The sign-in form expired or came from another site. Sign in again from this page.");
    if (!(await underSignInLimit(c))) return loginPage(c, 429, "Too many failed sign-ins from your address. Wait a minute, then try again.");
    const email = (form.email ?? "").trim().toLowerCase();
    if (!/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email) || email.length > 320) return loginPage(c, 400, "Enter your work email address.");
    const next = safeNext(form.next);
    const candidates = await candidatesFor(c, email);
    if (candidates.length === 0) {
      await auditFailedSignIn(c, "sso", "no_organisation", null, { email_domain: emailDomain(email) });
      return loginPage(c, 403, "No organisation lets this address sign in with single sign-on. Ask your admin for an invitation, or sign in with a token.");
    }
    const only = candidates[0];
    if (candidates.length === 1 && only) return startSso(c, only.tenantId, email, next);
    return ssoChoicePage(c, candidates, email, next);
  })
  // Step 1b: one organisation picked among several (a GET link: it only starts the redirect).
  .get("/start/:tenant_id", async (c) => startSso(c, c.req.param("tenant_id"), c.req.query("email"), safeNext(c.req.query("next"))))
  // Step 2: back from the issuer.
  .get("/callback", async (c) => {
    const deps = c.get("deps");
    const raw = getCookie(c, STATE_COOKIE);
    clearHostCookie(c, STATE_COOKIE);
    const st = raw === undefined ? null : await verifyState(deps.secrets.dashboard, raw);
    if (!isState(st) || st.exp < Date.now()) return loginPage(c, 400, "The sign-in took too long or was started in another browser. Start again.");
    const config = await configOf(c, st.tenant);
    if (!config) return loginPage(c, 400, "That organisation's single sign-on was removed. Ask its admin.");
    const fail = async (reason: string, message: string, details: Record<string, unknown> = {}) => {
      await auditFailedSignIn(c, "sso", reason, st.tenant, { issuer: config.issuer, ...details });
      return loginPage(c, 403, message);
    };
    try {
      const as = await authorizationServer(config.issuer);
      const client: oauth.Client = { client_id: config.clientId };
      const auth = config.clientSecretEnc === null ? oauth.None() : oauth.ClientSecretPost(await openClientSecret(deps.secrets.dashboard, config.tenantId, config.clientSecretEnc));
      const params = oauth.validateAuthResponse(as, client, new URL(c.req.url), st.state);
      const opts = { signal: AbortSignal.timeout(ISSUER_TIMEOUT_MS), [oauth.allowInsecureRequests]: insecure(config.issuer) };
      const response = await oauth.authorizationCodeGrantRequest(as, client, auth, params, redirectUriOf(c.req.url), st.verifier, opts);
      const result = await oauth.processAuthorizationCodeResponse(as, client, response, { expectedNonce: st.nonce, requireIdToken: true });
      // Over TLS the token endpoint vouches for the ID token; its signature is checked anyway.
      await oauth.validateApplicationLevelSignature(as, response, opts);
      const claims = oauth.getValidatedIdTokenClaims(result);
      if (!claims) throw new Error("no ID token");
      // Some issuers put email claims only in the UserInfo answer (conformant when an access token is issued).
      let identity: Record<string, unknown> = { ...claims };
      if (typeof claims.email !== "string" && as.userinfo_endpoint) {
        const info = await oauth.userInfoRequest(as, client, result.access_token, opts);
        identity = await oauth.processUserInfoResponse(as, client, claims.sub, info);
      }
      const email = typeof identity.email === "string" ? identity.email.toLowerCase() : "";
      if (email === "" || identity.email_verified !== true) {
        return fail("email_not_verified", "Your identity provider did not vouch for your email address (email_verified). Ask your admin.", { subject: claims.sub });
      }
      const role = await roleFor(c, config, email);
      if (role === null) return fail("not_invited", `${email} is not invited to this organisation's dashboard and its domain is not admitted. Ask an admin to invite you.`, { email });
      await startSession(c, {
        actor: { kind: "tenant", tenantId: config.tenantId, principal: `user:${email}` },
        role,
        method: "sso",
        details: { email, issuer: config.issuer, subject: claims.sub },
      });
      // The first sign-in accepts the invitation.
      await deps.db((db) =>
        db
          .update(ssoInvitations)
          .set({ lastSignInAt: sql`now()`, acceptedAt: sql`coalesce(${ssoInvitations.acceptedAt}, now())` })
          .where(and(eq(ssoInvitations.tenantId, config.tenantId), eq(ssoInvitations.email, email))),
      );
      // The session cookie is SameSite=Strict: a redirect straight from the issuer's navigation would
      // not carry it, so this page moves on with a same-site navigation.
      return ssoContinuePage(c, st.next);
    } catch (err) {
      deps.log("dashboard_sso_failed", { tenantId: st.tenant, issuer: config.issuer, error: err instanceof Error ? err.message : String(err) });
      return fail("oidc_error", "Single sign-on failed: the identity provider's answer could not be verified. Start again; if it persists, ask your admin to check the client settings.", {
        error: err instanceof Error ? err.message : String(err),
      });
    }
  });
