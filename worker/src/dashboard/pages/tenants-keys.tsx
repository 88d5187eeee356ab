/** @jsxImportSource hono/jsx */
/**
 * An environment's page (its keys, limits and budgets) and a key's page (details, rotate, revoke,
 * limits, budgets), under /dashboard/tenants/:id. Creating and rotating a key answer the POST with
 * the page that shows the full key once (no redirect: the key is never in a URL, cookie or log).
 */
import { Hono } from "hono";
import type { FC } from "hono/jsx";
import type { ApiKeyJson, CreatedApiKeyJson, EnvironmentJson, TenantJson } from "../../admin/wire.ts";
import { ApiError } from "../../errors.ts";
import { adminCall, adminGet } from "../bridge.ts";
import { sessionOf, type DashboardContext, type DashboardEnv } from "../env.ts";
import { formOf, redirectWith, takeFlash } from "../http.ts";
import type { DashboardSession } from "../session.ts";
import { Action, Csrf, Page, Time } from "../ui.tsx";
import { canChange, Crumbs, KeyShownOnce, NextPage, pageOf, StatusBadge, tenantCrumbs, type Crumb } from "./tenants-parts.tsx";
import { BudgetsSection, LimitsSection, loadSettings } from "./tenants-settings.tsx";

interface List<T> {
  data: T[];
  next_cursor: string | null;
}

/** Scopes a key can have (auth/keys-admin.ts), with what each allows. */
const SCOPES = [
  { scope: "chat", label: "chat: chat and text completions", default: true },
  { scope: "embeddings", label: "embeddings", default: true },
  { scope: "admin", label: "admin: manage this tenant (admin API and dashboard)", default: false },
] as const;

/** How long the old key keeps working after a rotation. */
const OVERLAPS = [
  { seconds: 0, label: "Stop at once" },
  { seconds: 300, label: "5 minutes" },
  { seconds: 3600, label: "1 hour" },
  { seconds: 86_400, label: "1 day" },
  { seconds: 7 * 86_400, label: "7 days" },
] as const;

/** The environment `envId` of tenant `tenantId`, with its tenant; 404 when it belongs to another tenant. */
async function loadEnvironment(c: DashboardContext, session: DashboardSession, tenantId: string, envId: string): Promise<{ tenant: TenantJson; env: EnvironmentJson }> {
  const env = await adminGet<EnvironmentJson>(c, session, `/admin/environments/${encodeURIComponent(envId)}`);
  if (env.tenant_id !== tenantId) throw new ApiError("not_found", `No environment with id ${envId}.`);
  const tenant = await adminGet<TenantJson>(c, session, `/admin/tenants/${encodeURIComponent(tenantId)}`);
  return { tenant, env };
}

function envCrumbs(session: DashboardSession, tenant: TenantJson, env: EnvironmentJson): Crumb[] {
  return [...tenantCrumbs(session, tenant), { label: env.name, href: pageOf(tenant.id, "environment", env.id) }];
}

const KeyStatus: FC<{ k: ApiKeyJson }> = ({ k }) => (
  <>
    <StatusBadge status={k.status} />
    {k.status === "active" && k.expires_at !== null && (
      <span class="muted">
        {" until "}
        <Time at={k.expires_at} />
      </span>
    )}
  </>
);

/** The key pages, mounted under /dashboard/tenants. */
export const keyPages = new Hono<DashboardEnv>()
  .get("/:id/environments/:envId", async (c) => {
    const session = sessionOf(c);
    const { id, envId } = c.req.param();
    const { tenant, env } = await loadEnvironment(c, session, id, envId);
    const cursor = c.req.query("cursor");
    const [keys, settings] = await Promise.all([
      adminGet<List<ApiKeyJson>>(c, session, `/admin/keys?environment_id=${encodeURIComponent(envId)}&limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`),
      loadSettings(c, session, "environment", envId),
    ]);
    const change = canChange(session);
    const here = pageOf(id, "environment", envId);
    return c.html(
      <Page title={`Environment ${env.name}`} session={session} current="/tenants" flash={takeFlash(c)}>
        <Crumbs items={envCrumbs(session, tenant, env)} />
        <h1>{`Environment ${env.name}`}</h1>
        <dl>
          <dt>Id</dt>
          <dd class="mono">{env.id}</dd>
          <dt>Created</dt>
          <dd>
            <Time at={env.created_at} />
          </dd>
          <dt>Pinned region</dt>
          <dd>{env.pinned_region ?? "none"}</dd>
          <dt>Routing strategy</dt>
          <dd>{env.routing_strategy ?? "the model’s (else least load)"}</dd>
          <dt>Conversation audit</dt>
          <dd>{env.audit_mode}</dd>
          <dt>Response cache</dt>
          <dd>{env.cache_enabled ? "on" : "off"}</dd>
        </dl>
        <section aria-labelledby="keys-heading">
          <h2 id="keys-heading">API keys</h2>
          {keys.data.length === 0 ? (
            <p class="muted">No keys in this environment yet.</p>
          ) : (
            <table>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Prefix</th>
                  <th scope="col">Scopes</th>
                  <th scope="col">Status</th>
                  <th scope="col">Created</th>
                </tr>
              </thead>
              <tbody>
                {keys.data.map((k) => (
                  <tr>
                    <th scope="row">
                      <a href={pageOf(id, "key", k.id)}>{k.name}</a>
                    </th>
                    <td class="mono">{`${k.prefix}…`}</td>
                    <td>{k.scopes.join(", ")}</td>
                    <td>
                      <KeyStatus k={k} />
                    </td>
                    <td>
                      <Time at={k.created_at} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          <NextPage path={here} cursor={keys.next_cursor} label="More keys" />
          {change && (
            <form method="post" action={`${here}/keys`} class="stack">
              <h3>Create a key</h3>
              <Csrf session={session} />
              <label>
                Name
                <input type="text" name="name" required maxlength={100} placeholder="backend" />
              </label>
              <fieldset>
                <legend>Scopes</legend>
                {SCOPES.map((s) => (
                  <label style="display:flex;gap:.4rem;align-items:center">
                    <input type="checkbox" name={`scope_${s.scope}`} value="on" checked={s.default} />
                    {s.label}
                  </label>
                ))}
              </fieldset>
              <label>
                Expires after (days; empty: never)
                <input type="number" name="expires_days" min="1" max="3650" step="1" inputmode="numeric" />
              </label>
              <label>
                Allowed models (comma-separated; empty: all)
                <input type="text" name="allowed_models" />
              </label>
              <button type="submit">Create key</button>
            </form>
          )}
        </section>
        <LimitsSection session={session} tenantId={id} settings={settings} editable={change} />
        <BudgetsSection session={session} tenantId={id} settings={settings} editable={change} />
      </Page>,
    );
  })
  .post("/:id/environments/:envId/keys", async (c) => {
    const session = sessionOf(c);
    const { id, envId } = c.req.param();
    const back = pageOf(id, "environment", envId);
    const form = await formOf(c);
    const scopes = SCOPES.filter((s) => form[`scope_${s.scope}`] === "on").map((s) => s.scope);
    if (scopes.length === 0) return redirectWith(c, back, { kind: "error", text: "Choose at least one scope for the key." });
    const days = (form.expires_days ?? "").trim();
    if (days !== "" && !/^[1-9]\d{0,3}$/.test(days)) return redirectWith(c, back, { kind: "error", text: "Expires after must be a whole number of days, or empty." });
    const models = (form.allowed_models ?? "").split(",").map((m) => m.trim()).filter((m) => m !== "");
    const res = await adminCall<CreatedApiKeyJson>(c, session, "POST", "/admin/keys", {
      environment_id: envId,
      name: form.name ?? "",
      scopes,
      allowed_models: models.length === 0 ? null : models,
      expires_at: days === "" ? null : new Date(Date.now() + Number(days) * 86_400_000).toISOString(),
    });
    if (!res.ok) return redirectWith(c, back, { kind: "error", text: res.error.message });
    const { tenant, env } = await loadEnvironment(c, session, id, envId);
    const crumbs = [...envCrumbs(session, tenant, env), { label: res.data.name, href: pageOf(id, "key", res.data.id) }];
    return c.html(<KeyShownOnce session={session} title="Key created" intro={`The key ${res.data.name} was created in ${env.name}. This is the full key:`} apiKey={res.data} crumbs={crumbs} />);
  })
  .get("/:id/keys/:keyId", async (c) => {
    const session = sessionOf(c);
    const { id, keyId } = c.req.param();
    const key = await adminGet<ApiKeyJson>(c, session, `/admin/keys/${encodeURIComponent(keyId)}`);
    if (key.tenant_id !== id) throw new ApiError("not_found", `No api key with id ${keyId}.`);
    const [{ tenant, env }, settings] = await Promise.all([loadEnvironment(c, session, id, key.environment_id), loadSettings(c, session, "key", keyId)]);
    const change = canChange(session);
    const here = pageOf(id, "key", keyId);
    const usable = key.status === "active";
    return c.html(
      <Page title={`Key ${key.name}`} session={session} current="/tenants" flash={takeFlash(c)}>
        <Crumbs items={[...envCrumbs(session, tenant, env), { label: key.name, href: here }]} />
        <h1>{`Key ${key.name}`}</h1>
        <dl>
          <dt>Id</dt>
          <dd class="mono">{key.id}</dd>
          <dt>Prefix</dt>
          <dd class="mono">{`${key.prefix}…`}</dd>
          <dt>Status</dt>
          <dd>
            <StatusBadge status={key.status} />
          </dd>
          <dt>Scopes</dt>
          <dd>{key.scopes.join(", ")}</dd>
          <dt>Allowed models</dt>
          <dd>{key.allowed_models === null ? "all" : key.allowed_models.join(", ")}</dd>
          <dt>Created</dt>
          <dd>
            <Time at={key.created_at} />
          </dd>
          <dt>Expires</dt>
          <dd>{key.expires_at === null ? "never" : <Time at={key.expires_at} />}</dd>
          {key.revoked_at !== null && (
            <>
              <dt>Revoked</dt>
              <dd>
                <Time at={key.revoked_at} />
              </dd>
            </>
          )}
        </dl>
        {change && usable && (
          <section aria-labelledby="key-actions">
            <h2 id="key-actions">Rotate or revoke</h2>
            <form method="post" action={`${here}/rotate`} class="row" data-confirm={`Rotate ${key.name}? A new key is made; the old one stops after the overlap you chose.`}>
              <Csrf session={session} />
              <label>
                The old key keeps working for
                <select name="overlap_seconds">
                  {OVERLAPS.map((o) => (
                    <option value={String(o.seconds)} selected={o.seconds === 3600}>
                      {o.label}
                    </option>
                  ))}
                </select>
              </label>
              <button type="submit">Rotate key</button>
            </form>
            <Action session={session} action={`${here}/revoke`} label="Revoke key" danger confirm={`Revoke ${key.name}? Requests with it are refused within a few seconds; this cannot be undone.`} />
          </section>
        )}
        <LimitsSection session={session} tenantId={id} settings={settings} editable={change} />
        <BudgetsSection session={session} tenantId={id} settings={settings} editable={change} />
      </Page>,
    );
  })
  .post("/:id/keys/:keyId/rotate", async (c) => {
    const session = sessionOf(c);
    const { id, keyId } = c.req.param();
    const here = pageOf(id, "key", keyId);
    const overlap = Number((await formOf(c)).overlap_seconds ?? "3600");
    if (!OVERLAPS.some((o) => o.seconds === overlap)) return redirectWith(c, here, { kind: "error", text: "Choose how long the old key keeps working." });
    const res = await adminCall<CreatedApiKeyJson & { rotated_from: ApiKeyJson }>(c, session, "POST", `/admin/keys/${encodeURIComponent(keyId)}/rotate`, { overlap_seconds: overlap });
    if (!res.ok) return redirectWith(c, here, { kind: "error", text: res.error.message });
    const { tenant, env } = await loadEnvironment(c, session, id, res.data.environment_id);
    const crumbs = [...envCrumbs(session, tenant, env), { label: res.data.name, href: pageOf(id, "key", res.data.id) }];
    const when = overlap === 0 ? "The old key stops working within a few seconds." : `The old key keeps working for ${OVERLAPS.find((o) => o.seconds === overlap)?.label ?? ""}.`;
    const { rotated_from: rotatedFrom, ...created } = res.data;
    return c.html(<KeyShownOnce session={session} title="Key rotated" intro={`A new key replaces ${created.name} (same scopes, limits and expiry). ${when} This is the new key:`} apiKey={created} rotatedFrom={rotatedFrom} crumbs={crumbs} />);
  })
  .post("/:id/keys/:keyId/revoke", async (c) => {
    const { id, keyId } = c.req.param();
    const res = await adminCall<ApiKeyJson>(c, sessionOf(c), "POST", `/admin/keys/${encodeURIComponent(keyId)}/revoke`);
    return redirectWith(c, pageOf(id, "key", keyId), res.ok ? { kind: "ok", text: `Key ${res.data.name} revoked: it is refused within a few seconds.` } : { kind: "error", text: res.error.message });
  });
