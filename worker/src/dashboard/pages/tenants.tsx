/** @jsxImportSource hono/jsx */
/**
 * Tenants → environments → keys (/dashboard/tenants). The operator sees every tenant, creates,
 * suspends and resumes them; a tenant's own session goes straight to its tenant. Each tenant's page
 * lists its environments and shows its limits and budgets with live counters; environments and keys
 * have their pages in tenants-keys.tsx, the limit and budget forms in tenants-settings.tsx.
 */
import { Hono } from "hono";
import type { EnvironmentJson, TenantJson } from "../../admin/wire.ts";
import { adminCall, adminGet } from "../bridge.ts";
import { sessionOf, type DashboardEnv } from "../env.ts";
import { formOf, redirectWith, takeFlash } from "../http.ts";
import type { DashboardSession } from "../session.ts";
import { Action, Csrf, Page, Time } from "../ui.tsx";
import { keyPages } from "./tenants-keys.tsx";
import { canChange, Crumbs, isOperator, NextPage, pageOf, StatusBadge, tenantCrumbs, TENANTS } from "./tenants-parts.tsx";
import { BudgetsSection, LimitsSection, loadSettings, settingsPages } from "./tenants-settings.tsx";

interface List<T> {
  data: T[];
  next_cursor: string | null;
}

function cursorQuery(cursor: string | undefined): string {
  return cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
}

/** The tenant pages, mounted at /dashboard/tenants. */
export const tenantPages = new Hono<DashboardEnv>()
  .get("/", async (c) => {
    const session = sessionOf(c);
    if (session.actor.kind === "tenant") return c.redirect(pageOf(session.actor.tenantId, "tenant", session.actor.tenantId), 303);
    const tenants = await adminGet<List<TenantJson>>(c, session, `/admin/tenants?limit=200${cursorQuery(c.req.query("cursor"))}`);
    const change = canChange(session);
    return c.html(
      <Page title="Tenants" session={session} current="/tenants" flash={takeFlash(c)}>
        <h1>Tenants</h1>
        {change && (
          <section aria-labelledby="new-tenant">
            <h2 id="new-tenant">Create a tenant</h2>
            <form method="post" action={TENANTS} class="row">
              <Csrf session={session} />
              <label>
                Name
                <input type="text" name="name" required maxlength={200} />
              </label>
              <label>
                Plan (optional)
                <input type="text" name="plan" maxlength={64} placeholder="free" />
              </label>
              <button type="submit">Create tenant</button>
            </form>
          </section>
        )}
        <h2>All tenants</h2>
        {tenants.data.length === 0 ? (
          <p class="muted">No tenants yet.</p>
        ) : (
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Id</th>
                <th scope="col">Status</th>
                <th scope="col">Plan</th>
                <th scope="col">Created</th>
                {change && <th scope="col">Actions</th>}
              </tr>
            </thead>
            <tbody>
              {tenants.data.map((t) => (
                <tr>
                  <th scope="row">
                    <a href={pageOf(t.id, "tenant", t.id)}>{t.name}</a>
                  </th>
                  <td class="mono">{t.id}</td>
                  <td>
                    <StatusBadge status={t.status} />
                  </td>
                  <td>{t.plan}</td>
                  <td>
                    <Time at={t.created_at} />
                  </td>
                  {change && <td>{<SuspendResume session={session} tenant={t} back={TENANTS} />}</td>}
                </tr>
              ))}
            </tbody>
          </table>
        )}
        <NextPage path={TENANTS} cursor={tenants.next_cursor} label="More tenants" />
      </Page>,
    );
  })
  .post("/", async (c) => {
    const form = await formOf(c);
    const plan = (form.plan ?? "").trim();
    const res = await adminCall<TenantJson>(c, sessionOf(c), "POST", "/admin/tenants", { name: form.name ?? "", ...(plan === "" ? {} : { plan }) });
    if (!res.ok) return redirectWith(c, TENANTS, { kind: "error", text: res.error.message });
    return redirectWith(c, pageOf(res.data.id, "tenant", res.data.id), { kind: "ok", text: `Tenant ${res.data.name} created.` });
  })
  .post("/:id/suspend", async (c) => {
    const id = c.req.param("id");
    const res = await adminCall<TenantJson>(c, sessionOf(c), "POST", `/admin/tenants/${encodeURIComponent(id)}/suspend`);
    const back = safeBack((await formOf(c)).back, pageOf(id, "tenant", id));
    return redirectWith(c, back, res.ok ? { kind: "ok", text: `Tenant ${res.data.name} suspended: its keys are refused within a few seconds.` } : { kind: "error", text: res.error.message });
  })
  .post("/:id/resume", async (c) => {
    const id = c.req.param("id");
    const res = await adminCall<TenantJson>(c, sessionOf(c), "POST", `/admin/tenants/${encodeURIComponent(id)}/resume`);
    const back = safeBack((await formOf(c)).back, pageOf(id, "tenant", id));
    return redirectWith(c, back, res.ok ? { kind: "ok", text: `Tenant ${res.data.name} resumed.` } : { kind: "error", text: res.error.message });
  })
  .get("/:id", async (c) => {
    const session = sessionOf(c);
    const id = c.req.param("id");
    const tenant = await adminGet<TenantJson>(c, session, `/admin/tenants/${encodeURIComponent(id)}`);
    const [envs, settings] = await Promise.all([
      adminGet<List<EnvironmentJson>>(c, session, `/admin/environments?tenant_id=${encodeURIComponent(id)}&limit=200${cursorQuery(c.req.query("cursor"))}`),
      loadSettings(c, session, "tenant", id),
    ]);
    const change = canChange(session);
    // A tenant's own limits and budgets are the operator's guard on shared capacity (admin/scope.ts).
    const ownSettings = change && isOperator(session);
    return c.html(
      <Page title={`Tenant ${tenant.name}`} session={session} current="/tenants" flash={takeFlash(c)}>
        <Crumbs items={tenantCrumbs(session, tenant)} />
        <h1>{`Tenant ${tenant.name}`}</h1>
        <dl>
          <dt>Id</dt>
          <dd class="mono">{tenant.id}</dd>
          <dt>Status</dt>
          <dd>
            <StatusBadge status={tenant.status} />
          </dd>
          <dt>Plan</dt>
          <dd>{tenant.plan}</dd>
          <dt>Created</dt>
          <dd>
            <Time at={tenant.created_at} />
          </dd>
        </dl>
        {ownSettings && <SuspendResume session={session} tenant={tenant} back={pageOf(id, "tenant", id)} />}
        {change && (
          <form method="post" action={pageOf(id, "tenant", id)} class="row">
            <Csrf session={session} />
            <label>
              Name
              <input type="text" name="name" required maxlength={200} value={tenant.name} />
            </label>
            {/* Plan and status are billing decisions: the operator's (tenants-admin.ts). */}
            {isOperator(session) && (
              <label>
                Plan
                <input type="text" name="plan" required maxlength={64} value={tenant.plan} />
              </label>
            )}
            <button type="submit" class="secondary">
              Save tenant
            </button>
          </form>
        )}
        <section aria-labelledby="envs-heading">
          <h2 id="envs-heading">Environments</h2>
          {envs.data.length === 0 ? (
            <p class="muted">No environments yet: create one to issue keys.</p>
          ) : (
            <table>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Id</th>
                  <th scope="col">Pinned region</th>
                  <th scope="col">Created</th>
                </tr>
              </thead>
              <tbody>
                {envs.data.map((e) => (
                  <tr>
                    <th scope="row">
                      <a href={pageOf(id, "environment", e.id)}>{e.name}</a>
                    </th>
                    <td class="mono">{e.id}</td>
                    <td>{e.pinned_region ?? <span class="muted">none</span>}</td>
                    <td>
                      <Time at={e.created_at} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          <NextPage path={pageOf(id, "tenant", id)} cursor={envs.next_cursor} label="More environments" />
          {change && (
            <form method="post" action={`${pageOf(id, "tenant", id)}/environments`} class="row">
              <Csrf session={session} />
              <label>
                New environment’s name
                <input type="text" name="name" required maxlength={100} placeholder="production" />
              </label>
              <button type="submit">Create environment</button>
            </form>
          )}
        </section>
        <LimitsSection session={session} tenantId={id} settings={settings} editable={ownSettings} />
        <BudgetsSection session={session} tenantId={id} settings={settings} editable={ownSettings} />
      </Page>,
    );
  })
  .post("/:id", async (c) => {
    const id = c.req.param("id");
    const form = await formOf(c);
    const change: Record<string, string> = { name: form.name ?? "" };
    if (form.plan !== undefined) change.plan = form.plan;
    const res = await adminCall<TenantJson>(c, sessionOf(c), "PATCH", `/admin/tenants/${encodeURIComponent(id)}`, change);
    return redirectWith(c, pageOf(id, "tenant", id), res.ok ? { kind: "ok", text: `Tenant ${res.data.name} saved.` } : { kind: "error", text: res.error.message });
  })
  .post("/:id/environments", async (c) => {
    const id = c.req.param("id");
    const form = await formOf(c);
    const res = await adminCall<EnvironmentJson>(c, sessionOf(c), "POST", "/admin/environments", { tenant_id: id, name: form.name ?? "" });
    if (!res.ok) return redirectWith(c, pageOf(id, "tenant", id), { kind: "error", text: res.error.message });
    return redirectWith(c, pageOf(id, "environment", res.data.id), { kind: "ok", text: `Environment ${res.data.name} created.` });
  })
  .route("/", keyPages)
  .route("/", settingsPages);

/** Where to go back after suspend/resume: the given tenant-pages path, else `fallback`. */
function safeBack(back: string | undefined, fallback: string): string {
  return back !== undefined && (back === TENANTS || back.startsWith(`${TENANTS}/`)) && !/[\\\r\n]|\/\//.test(back) ? back : fallback;
}

/** Suspend (with confirmation) or resume a tenant: the operator's only. */
function SuspendResume(p: { session: DashboardSession; tenant: TenantJson; back: string }) {
  if (!isOperator(p.session)) return null;
  const base = pageOf(p.tenant.id, "tenant", p.tenant.id);
  return p.tenant.status === "active" ? (
    <Action
      session={p.session}
      action={`${base}/suspend`}
      label={`Suspend ${p.tenant.name}`}
      danger
      confirm={`Suspend ${p.tenant.name}? All its keys will be refused until it is resumed.`}
      fields={{ back: p.back }}
    />
  ) : (
    <Action session={p.session} action={`${base}/resume`} label={`Resume ${p.tenant.name}`} fields={{ back: p.back }} />
  );
}
