/**
 * Dashboard sessions: a random token in an HttpOnly, Secure, SameSite=Strict cookie, its SHA-256 in
 * `dashboard_sessions`. A session ends at its absolute expiry, when unused for the idle time, when
 * signed out or revoked, when its tenant is suspended, and (key sign-ins) when its key stops working.
 * Every change a session makes carries a CSRF token derived from the session token (csrfTokenOf).
 */
import { and, eq, isNull, lt, or } from "drizzle-orm";
import type { Context } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { dashboardSessions, tenants } from "../../../schema/tables/index.ts";
import { OPERATOR_PRINCIPAL, type AdminActor } from "../admin/auth.ts";
import { newId, recordAudit, type AdminDb } from "../admin/store.ts";
import type { AppEnv } from "../env.ts";
import type { Deps } from "../platform/deps.ts";
import { loadHotState } from "../platform/hot-state.ts";

/** The session cookie (`__Host-`: Secure, path /, no Domain, so no sibling host can set or read it). */
export const SESSION_COOKIE = "__Host-switchyard_session";

/** A dashboard role: admins change what their actor may change, viewers only read. */
export type DashboardRole = "admin" | "viewer";

/** A live session, as the pages see it. */
export interface DashboardSession {
  id: string;
  actor: AdminActor;
  role: DashboardRole;
  method: "token" | "key" | "sso";
  /** The token every change must carry (form field `_csrf` or header `x-csrf-token`). */
  csrf: string;
}

/** What a new session is. */
export interface NewSession {
  actor: AdminActor;
  role: DashboardRole;
  method: DashboardSession["method"];
  keyHash?: string | null;
  /** Audit details of the sign-in (never a credential). */
  details?: Record<string, unknown>;
}

function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/** A fresh random token (256 bits), base64url. */
export function randomToken(): string {
  return base64url(crypto.getRandomValues(new Uint8Array(32)));
}

async function sha256Hex(value: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(value)));
  let out = "";
  for (const b of digest) out += b.toString(16).padStart(2, "0");
  return out;
}

/** The CSRF token of a session: only a holder of the (HttpOnly) session cookie can know it. */
export async function csrfTokenOf(sessionToken: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`switchyard-dashboard-csrf:${sessionToken}`));
  return base64url(new Uint8Array(digest));
}

/** Compares two strings in constant time (through their digests, so lengths do not show). */
export async function sameSecret(a: string, b: string): Promise<boolean> {
  const enc = new TextEncoder();
  const [da, db] = await Promise.all([crypto.subtle.digest("SHA-256", enc.encode(a)), crypto.subtle.digest("SHA-256", enc.encode(b))]);
  return crypto.subtle.timingSafeEqual(da, db);
}

/** Sets a `__Host-` cookie the way every dashboard cookie is set. */
export function setHostCookie(c: Context<AppEnv>, name: string, value: string, maxAgeSeconds: number): void {
  setCookie(c, name, value, { path: "/", httpOnly: true, secure: true, sameSite: "Strict", maxAge: maxAgeSeconds });
}

/** Removes a `__Host-` cookie. */
export function clearHostCookie(c: Context<AppEnv>, name: string): void {
  deleteCookie(c, name, { path: "/", secure: true });
}

/**
 * Starts a session: its row and the audit row of the sign-in in one transaction, then the cookie.
 * Returns the session's public id.
 */
export async function startSession(c: Context<AppEnv>, s: NewSession): Promise<string> {
  const deps = c.get("deps");
  const token = randomToken();
  const id = newId("dss");
  const now = Date.now();
  const tenantId = s.actor.kind === "tenant" ? s.actor.tenantId : null;
  await deps.db((db) =>
    db.transaction(async (tx) => {
      await tx.insert(dashboardSessions).values({
        id,
        tokenHash: await sha256Hex(token),
        kind: s.actor.kind,
        tenantId,
        method: s.method,
        role: s.role,
        principal: s.actor.principal,
        keyHash: s.keyHash ?? null,
        expiresAt: new Date(now + deps.settings.dashboard.maxMs),
      });
      await recordAudit(tx, s.actor.principal, "dashboard.sign_in", "dashboard_session", id, tenantId, { method: s.method, role: s.role, ...s.details });
    }),
  );
  setHostCookie(c, SESSION_COOKIE, token, Math.floor(deps.settings.dashboard.maxMs / 1000));
  return id;
}

// How stale `last_seen_at` may get before a page view writes it again (one write a minute at most).
const TOUCH_EVERY_MS = 60_000;

/**
 * The request's session, or null (no cookie, unknown, ended). One primary-key read per page (the
 * dashboard is not the inference path); key sessions also check their key through the same caches
 * the API uses, so a revoked key ends its sessions within KEY_CACHE_ISOLATE_SECONDS.
 */
export async function loadSession(c: Context<AppEnv>): Promise<DashboardSession | null> {
  const token = getCookie(c, SESSION_COOKIE);
  if (token === undefined || !/^[A-Za-z0-9_-]{43}$/.test(token)) return null;
  const deps = c.get("deps");
  const hash = await sha256Hex(token);
  const now = Date.now();
  const found = await deps.db(async (db) => {
    const rows = await db
      .select({ s: dashboardSessions, tenantStatus: tenants.status })
      .from(dashboardSessions)
      .leftJoin(tenants, eq(tenants.id, dashboardSessions.tenantId))
      .where(and(eq(dashboardSessions.tokenHash, hash), isNull(dashboardSessions.revokedAt)));
    const row = rows[0];
    if (!row) return null;
    const s = row.s;
    const ended = s.expiresAt.getTime() <= now || s.lastSeenAt.getTime() + deps.settings.dashboard.idleMs <= now;
    // A tenant's session needs its tenant, active; a suspended organisation's users are signed out.
    const tenantGone = s.kind === "tenant" && row.tenantStatus !== "active";
    if (ended || tenantGone) {
      await db.update(dashboardSessions).set({ revokedAt: new Date(now) }).where(eq(dashboardSessions.id, s.id));
      return null;
    }
    if (now - s.lastSeenAt.getTime() > TOUCH_EVERY_MS) {
      await db.update(dashboardSessions).set({ lastSeenAt: new Date(now) }).where(eq(dashboardSessions.id, s.id));
    }
    return s;
  });
  if (!found) return null;
  if (found.keyHash !== null && !(await keyStillAdmin(deps, found.keyHash))) {
    await endSession(deps, found.id, found.principal, found.tenantId, "key_no_longer_valid");
    return null;
  }
  const actor: AdminActor =
    found.kind === "operator" || found.tenantId === null
      ? { kind: "operator", principal: OPERATOR_PRINCIPAL }
      : { kind: "tenant", tenantId: found.tenantId, principal: found.principal };
  return { id: found.id, actor, role: found.role, method: found.method, csrf: await csrfTokenOf(token) };
}

async function keyStillAdmin(deps: Deps, keyHash: string): Promise<boolean> {
  const state = await loadHotState(deps, keyHash);
  if (!state.key.found) return false;
  const k = state.key.identity;
  return !k.revoked && (k.expiresAt === null || k.expiresAt > Date.now()) && k.scopes.includes("admin") && k.tenantStatus === "active";
}

/** Ends a session (sign-out, or found invalid) and audits why. */
export async function endSession(deps: Deps, id: string, principal: string, tenantId: string | null, reason: string): Promise<void> {
  await deps.db((db) =>
    db.transaction(async (tx) => {
      const ended = await tx
        .update(dashboardSessions)
        .set({ revokedAt: new Date() })
        .where(and(eq(dashboardSessions.id, id), isNull(dashboardSessions.revokedAt)))
        .returning({ id: dashboardSessions.id });
      if (ended.length > 0) await recordAudit(tx, principal, "dashboard.sign_out", "dashboard_session", id, tenantId, { reason });
    }),
  );
}

/** Ends every live session of one user of a tenant (their invitation was withdrawn or role changed). */
export async function endSessionsOf(db: AdminDb, tenantId: string, principal: string): Promise<number> {
  const ended = await db
    .update(dashboardSessions)
    .set({ revokedAt: new Date() })
    .where(and(eq(dashboardSessions.tenantId, tenantId), eq(dashboardSessions.principal, principal), isNull(dashboardSessions.revokedAt)))
    .returning({ id: dashboardSessions.id });
  return ended.length;
}

/** Deletes sessions that ended (expired or revoked) more than a day ago; returns how many. */
export async function deleteEndedSessions(db: AdminDb, now = Date.now()): Promise<number> {
  const before = new Date(now - 86_400_000);
  const gone = await db
    .delete(dashboardSessions)
    .where(or(lt(dashboardSessions.expiresAt, before), lt(dashboardSessions.revokedAt, before)))
    .returning({ id: dashboardSessions.id });
  return gone.length;
}
