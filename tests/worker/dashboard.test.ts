import { env, exports } from "cloudflare:workers";
import { Client } from "pg";
import { describe, expect, inject, it } from "vitest";
import { admin, expectStatus, sandbox, type List } from "./admin-helpers.ts";
import { getPage, postForm, signIn } from "./dashboard-helpers.ts";
import type { AuditJson } from "../../worker/src/admin/wire.ts";
import { deleteEndedSessions } from "../../worker/src/dashboard/session.ts";
import { withDb } from "../../worker/src/platform/db.ts";

async function sql(text: string, params: unknown[] = []): Promise<{ rows: Record<string, unknown>[] }> {
  const client = new Client({ connectionString: env.DATABASE_URL });
  client.on("error", () => {});
  await client.connect();
  try {
    return await client.query(text, params);
  } finally {
    await client.end();
  }
}

async function sessionIdOf(principal: string): Promise<string> {
  const { rows } = await sql("select id from dashboard_sessions where principal = $1 and revoked_at is null order by created_at desc limit 1", [principal]);
  const id = rows[0]?.id;
  return typeof id === "string" ? id : "";
}

/** Posts the sign-in form from `address` (Cloudflare's CF-Connecting-IP). */
async function signInFrom(address: string, token: string): Promise<{ status: number; html: string }> {
  const login = await exports.default.fetch(new Request("http://gateway.test/dashboard/login"));
  const html = await login.text();
  const loginToken = /name="_login" value="([^"]+)"/.exec(html)?.[1] ?? "";
  const cookie = (login.headers.getSetCookie()[0] ?? "").split(";")[0] ?? "";
  const res = await exports.default.fetch(
    new Request("http://gateway.test/dashboard/login", {
      method: "POST",
      headers: { cookie, "content-type": "application/x-www-form-urlencoded", "cf-connecting-ip": address },
      body: new URLSearchParams({ _login: loginToken, token }).toString(),
      redirect: "manual",
    }),
  );
  return { status: res.status, html: await res.text() };
}

describe("dashboard sign-in and sessions", () => {
  it("sends a visitor without a session to the sign-in page, and lets the admin token in", async () => {
    const anon = await getPage({ cookies: new Map() }, "/dashboard/tenants");
    expect(anon.status).toBe(303);
    expect(anon.headers.get("location")).toBe("/dashboard/login?next=%2Fdashboard%2Ftenants");
    const b = await signIn();
    const page = await getPage(b, "/dashboard");
    expect(page.html).toContain("Operator");
    expect(page.headers.get("content-security-policy")).toContain("frame-ancestors 'none'");
    expect(page.headers.get("cache-control")).toBe("no-store");
    expect(page.headers.get("x-frame-options")).toBe("DENY");
  });

  it("sets the session cookie HttpOnly, Secure, SameSite=Strict with a __Host- name, and keeps only its hash", async () => {
    const b = { cookies: new Map<string, string>(), csrf: "" };
    const login = await getPage(b, "/dashboard/login");
    const loginToken = /name="_login" value="([^"]+)"/.exec(login.html)?.[1] ?? "";
    const res = await postForm(b, "/dashboard/login", { _csrf: null, _login: loginToken, token: inject("adminToken") });
    const cookie = res.headers.getSetCookie().find((c) => c.startsWith("__Host-switchyard_session=")) ?? "";
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/Secure/);
    expect(cookie).toMatch(/SameSite=Strict/);
    expect(cookie).toMatch(/Path=\//);
    const token = b.cookies.get("__Host-switchyard_session") ?? "";
    expect((await sql("select count(*)::int as n from dashboard_sessions where token_hash = $1 or id = $1", [token])).rows[0]?.n).toBe(0);
  });

  it("refuses a sign-in form without the login token, audits a wrong credential, and limits attempts per address", async () => {
    const b = { cookies: new Map<string, string>(), csrf: "" };
    const noToken = await postForm(b, "/dashboard/login", { _csrf: null, token: "whatever" });
    expect(noToken.status).toBe(403);
    const address = `198.51.100.${Math.floor(Math.random() * 250)}`;
    const wrong = await signInFrom(address, "not-the-admin-token");
    expect(wrong.status).toBe(401);
    expect(wrong.html).toContain("neither the admin token nor an active API key");
    const audit = expectStatus(await admin<List<AuditJson>>("GET", "/audit?action=dashboard.sign_in&limit=20"), 200);
    expect(audit.data.find((a) => !a.success && a.details.method === "token_or_key")).toBeDefined();
    // The limit is on failures per client address and minute: 10, then 429 even with the right token.
    for (let i = 0; i < 9; i++) expect((await signInFrom(address, "still-wrong")).status).toBe(401);
    const locked = await signInFrom(address, inject("adminToken"));
    expect(locked.status).toBe(429);
    expect(locked.html).toContain("Too many failed sign-ins");
    // Another address is not affected.
    expect((await signInFrom(`${address}0`, inject("adminToken"))).status).toBe(303);
  });

  it("audits the sign-in and the sign-out, after which the old cookie no longer works", async () => {
    const s = await sandbox();
    const b = await signIn(s.adminKey);
    const sessionId = await sessionIdOf(`key:${s.adminKeyId}`);
    expect(sessionId).toMatch(/^dss_/);
    const stolen = new Map(b.cookies);
    const out = await postForm(b, "/dashboard/logout");
    expect(out.status).toBe(303);
    expect(out.location).toBe("/dashboard/login");
    expect((await getPage({ cookies: stolen }, "/dashboard")).status).toBe(303);
    const audit = expectStatus(await admin<List<AuditJson>>("GET", `/audit?target_id=${sessionId}`), 200);
    expect(audit.data.map((a) => a.action)).toEqual(["dashboard.sign_out", "dashboard.sign_in"]);
    expect(audit.data[1]).toMatchObject({ actor: `key:${s.adminKeyId}`, tenant_id: s.tenantId, details: { method: "key", role: "admin" } });
  });

  it("ends a session after its idle time, at its absolute expiry, when its key is revoked and when its tenant is suspended", async () => {
    const s = await sandbox();
    const idle = await signIn(s.adminKey);
    await sql("update dashboard_sessions set last_seen_at = now() - interval '31 minutes' where id = $1", [await sessionIdOf(`key:${s.adminKeyId}`)]);
    expect((await getPage(idle, "/dashboard")).status).toBe(303);

    const expired = await signIn(s.adminKey);
    await sql("update dashboard_sessions set expires_at = now() - interval '1 second' where id = $1", [await sessionIdOf(`key:${s.adminKeyId}`)]);
    expect((await getPage(expired, "/dashboard")).status).toBe(303);

    const revoked = await signIn(s.adminKey);
    expectStatus(await admin("POST", `/keys/${s.adminKeyId}/revoke`), 200);
    await expect.poll(async () => (await getPage(revoked, "/dashboard")).status, { timeout: 8_000, interval: 500 }).toBe(303);

    const t = await sandbox();
    const suspended = await signIn(t.adminKey);
    expectStatus(await admin("POST", `/tenants/${t.tenantId}/suspend`), 200);
    expect((await getPage(suspended, "/dashboard")).status).toBe(303);
  });

  it("refuses a change without the session's CSRF token", async () => {
    const b = await signIn();
    const forged = await postForm(b, "/dashboard/logout", { _csrf: "forged" });
    // Sign-out without the token does nothing: the session still works.
    expect(forged.status).toBe(303);
    expect((await getPage(b, "/dashboard")).status).toBe(200);
  });

  it("removes sessions that ended more than a day ago", async () => {
    const s = await sandbox();
    await signIn(s.adminKey);
    const id = await sessionIdOf(`key:${s.adminKeyId}`);
    await sql("update dashboard_sessions set revoked_at = now() - interval '25 hours' where id = $1", [id]);
    const removed = await withDb(env.DATABASE_URL, env.NEON_WS_PROXY || null, (db) => deleteEndedSessions(db));
    expect(removed).toBeGreaterThanOrEqual(1);
    expect((await sql("select count(*)::int as n from dashboard_sessions where id = $1", [id])).rows[0]?.n).toBe(0);
  });
});
