/** @jsxImportSource hono/jsx */
/**
 * Single sign-on settings (/dashboard/sso): a tenant's OpenID Connect issuer and client, the email
 * domains it admits and with which role, and its invitations. Through /admin/sso (sso-admin.ts).
 */
import { Hono } from "hono";
import type { TenantJson } from "../../admin/wire.ts";
import { adminCall, adminGet } from "../bridge.ts";
import { sessionOf, type DashboardContext, type DashboardEnv } from "../env.ts";
import { formOf, redirectWith, takeFlash } from "../http.ts";
import type { SsoJson } from "../sso-admin.ts";
import { Action, BASE, Csrf, Page, Time } from "../ui.tsx";

function pageOf(tenantId: string): string {
  return `${BASE}/sso?tenant_id=${encodeURIComponent(tenantId)}`;
}

async function tenantChoice(c: DashboardContext): Promise<{ tenantId: string | null; tenants: TenantJson[] }> {
  const session = sessionOf(c);
  if (session.actor.kind === "tenant") return { tenantId: session.actor.tenantId, tenants: [] };
  const list = await adminGet<{ data: TenantJson[] }>(c, session, "/admin/tenants?limit=200");
  return { tenantId: c.req.query("tenant_id") ?? list.data[0]?.id ?? null, tenants: list.data };
}

/** The single sign-on page and its forms. */
export const ssoPages = new Hono<DashboardEnv>()
  .get("/", async (c) => {
    const session = sessionOf(c);
    const { tenantId, tenants } = await tenantChoice(c);
    const sso = tenantId === null ? null : await adminGet<SsoJson>(c, session, `/admin/sso/${encodeURIComponent(tenantId)}`);
    const canChange = session.role === "admin";
    const cfg = sso?.config ?? null;
    return c.html(
      <Page title="Single sign-on" session={session} current="/sso" flash={takeFlash(c)}>
        <h1>Single sign-on</h1>
        {tenants.length > 0 && (
          <form method="get" action={`${BASE}/sso`} class="row">
            <label>
              Tenant
              <select name="tenant_id">
                {tenants.map((t) => (
                  <option value={t.id} selected={t.id === tenantId}>{`${t.name} (${t.id})`}</option>
                ))}
              </select>
            </label>
            <button type="submit" class="secondary">
              Show
            </button>
          </form>
        )}
        {sso === null && <p>There are no tenants yet.</p>}
        {sso && (
          <>
            <h2>Identity provider</h2>
            <p>
              Register this redirect URI with the identity provider's client: <code>{sso.redirect_uri}</code>
            </p>
            {cfg ? (
              <table>
                <tbody>
                  <tr>
                    <th scope="row">Issuer</th>
                    <td class="mono">{cfg.issuer}</td>
                  </tr>
                  <tr>
                    <th scope="row">Client id</th>
                    <td class="mono">{cfg.client_id}</td>
                  </tr>
                  <tr>
                    <th scope="row">Client secret</th>
                    <td>{cfg.has_client_secret ? "set (stored encrypted, never shown)" : "none (public client, PKCE)"}</td>
                  </tr>
                  <tr>
                    <th scope="row">Admitted email domains</th>
                    <td>{cfg.allowed_domains.length === 0 ? "none: invitations only" : `${cfg.allowed_domains.join(", ")} as ${cfg.domain_role}`}</td>
                  </tr>
                  <tr>
                    <th scope="row">Updated</th>
                    <td>
                      <Time at={cfg.updated_at} />
                    </td>
                  </tr>
                </tbody>
              </table>
            ) : (
              <p>Single sign-on is not configured for this tenant.</p>
            )}
            {canChange && (
              <form method="post" action={`${BASE}/sso/config`} class="stack">
                <Csrf session={session} />
                <input type="hidden" name="tenant_id" value={sso.tenant_id} />
                <label>
                  Issuer URL
                  <input type="url" name="issuer" required value={cfg?.issuer ?? ""} placeholder="https://accounts.google.com" />
                </label>
                <label>
                  Client id
                  <input type="text" name="client_id" required value={cfg?.client_id ?? ""} />
                </label>
                <label>
                  Client secret {cfg?.has_client_secret ? "(leave empty to keep the stored one)" : "(empty for a public client)"}
                  <input type="password" name="client_secret" autocomplete="off" />
                </label>
                <label>
                  Admitted email domains (comma-separated; empty: invitations only)
                  <input type="text" name="allowed_domains" value={cfg?.allowed_domains.join(", ") ?? ""} />
                </label>
                <label>
                  Role of users admitted by domain
                  <select name="domain_role">
                    <option value="viewer" selected={cfg?.domain_role !== "admin"}>
                      viewer
                    </option>
                    <option value="admin" selected={cfg?.domain_role === "admin"}>
                      admin
                    </option>
                  </select>
                </label>
                <button type="submit">Save single sign-on</button>
              </form>
            )}
            {canChange && cfg && (
              <Action session={session} action={`${BASE}/sso/remove`} label="Remove single sign-on" danger fields={{ tenant_id: sso.tenant_id }} confirm="Remove single sign-on? Its users are signed out." />
            )}
            <h2>Invitations</h2>
            <table>
              <caption>People invited to this tenant's dashboard</caption>
              <thead>
                <tr>
                  <th scope="col">Email</th>
                  <th scope="col">Role</th>
                  <th scope="col">Invited by</th>
                  <th scope="col">Accepted</th>
                  <th scope="col">Last sign-in</th>
                  {canChange && <th scope="col">Actions</th>}
                </tr>
              </thead>
              <tbody>
                {sso.invitations.length === 0 && (
                  <tr>
                    <td colspan={canChange ? 6 : 5} class="muted">
                      No invitations yet.
                    </td>
                  </tr>
                )}
                {sso.invitations.map((inv) => (
                  <tr>
                    <td>{inv.email}</td>
                    <td>{inv.role}</td>
                    <td class="mono">{inv.invited_by}</td>
                    <td>
                      <Time at={inv.accepted_at} />
                    </td>
                    <td>
                      <Time at={inv.last_sign_in_at} />
                    </td>
                    {canChange && (
                      <td>
                        <Action
                          session={session}
                          action={`${BASE}/sso/uninvite`}
                          label={`Withdraw ${inv.email}`}
                          danger
                          fields={{ tenant_id: sso.tenant_id, email: inv.email }}
                          confirm={`Withdraw the invitation of ${inv.email}? They are signed out.`}
                        />
                      </td>
                    )}
                  </tr>
                ))}
              </tbody>
            </table>
            {canChange && (
              <form method="post" action={`${BASE}/sso/invite`} class="row">
                <Csrf session={session} />
                <input type="hidden" name="tenant_id" value={sso.tenant_id} />
                <label>
                  Email
                  <input type="email" name="email" required />
                </label>
                <label>
                  Role
                  <select name="role">
                    <option value="viewer">viewer</option>
                    <option value="admin">admin</option>
                  </select>
                </label>
                <button type="submit">Invite</button>
              </form>
            )}
          </>
        )}
      </Page>,
    );
  })
  .post("/config", async (c) => {
    const form = await formOf(c);
    const tenantId = form.tenant_id ?? "";
    const body: Record<string, unknown> = {
      issuer: form.issuer ?? "",
      client_id: form.client_id ?? "",
      allowed_domains: (form.allowed_domains ?? "")
        .split(",")
        .map((d) => d.trim())
        .filter((d) => d !== ""),
      domain_role: form.domain_role ?? "viewer",
    };
    if ((form.client_secret ?? "") !== "") body.client_secret = form.client_secret;
    const answer = await adminCall(c, sessionOf(c), "PUT", `/admin/sso/${encodeURIComponent(tenantId)}`, body);
    return redirectWith(c, pageOf(tenantId), answer.ok ? { kind: "ok", text: "Single sign-on saved." } : { kind: "error", text: answer.error.message });
  })
  .post("/remove", async (c) => {
    const form = await formOf(c);
    const tenantId = form.tenant_id ?? "";
    const answer = await adminCall(c, sessionOf(c), "DELETE", `/admin/sso/${encodeURIComponent(tenantId)}`);
    return redirectWith(c, pageOf(tenantId), answer.ok ? { kind: "ok", text: "Single sign-on removed; its users were signed out." } : { kind: "error", text: answer.error.message });
  })
  .post("/invite", async (c) => {
    const form = await formOf(c);
    const tenantId = form.tenant_id ?? "";
    const answer = await adminCall(c, sessionOf(c), "POST", `/admin/sso/${encodeURIComponent(tenantId)}/invitations`, { email: form.email ?? "", role: form.role ?? "viewer" });
    return redirectWith(c, pageOf(tenantId), answer.ok ? { kind: "ok", text: `${form.email ?? ""} is invited.` } : { kind: "error", text: answer.error.message });
  })
  .post("/uninvite", async (c) => {
    const form = await formOf(c);
    const tenantId = form.tenant_id ?? "";
    const answer = await adminCall(c, sessionOf(c), "DELETE", `/admin/sso/${encodeURIComponent(tenantId)}/invitations/${encodeURIComponent(form.email ?? "")}`);
    return redirectWith(c, pageOf(tenantId), answer.ok ? { kind: "ok", text: "Invitation withdrawn." } : { kind: "error", text: answer.error.message });
  });
