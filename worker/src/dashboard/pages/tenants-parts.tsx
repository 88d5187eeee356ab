/** @jsxImportSource hono/jsx */
/**
 * Pieces of the tenant pages (tenants.tsx): breadcrumbs, status badges, the key-shown-once page, and
 * the paths of a tenant's, environment's and key's pages.
 */
import type { FC } from "hono/jsx";
import type { ApiKeyJson, BudgetJson, TenantJson } from "../../admin/wire.ts";
import type { DashboardSession } from "../session.ts";
import { BASE, num, Page, Time, usd } from "../ui.tsx";

/** Where the tenant pages live. */
export const TENANTS = `${BASE}/tenants`;

/** The entities limits and budgets belong to on these pages. */
export type SettingsScope = "tenant" | "environment" | "key";

/** The page of a tenant, environment or key. */
export function pageOf(tenantId: string, scope: SettingsScope, scopeId: string): string {
  const t = `${TENANTS}/${encodeURIComponent(tenantId)}`;
  if (scope === "tenant") return t;
  return scope === "environment" ? `${t}/environments/${encodeURIComponent(scopeId)}` : `${t}/keys/${encodeURIComponent(scopeId)}`;
}

/** True when the session may change things at all (viewers only read). */
export function canChange(session: DashboardSession): boolean {
  return session.role !== "viewer";
}

/** True for the operator (the admin token): tenants, their status and their own limits are theirs. */
export function isOperator(session: DashboardSession): boolean {
  return session.actor.kind === "operator";
}

/** A step of the breadcrumb trail (the last one is the current page). */
export interface Crumb {
  label: string;
  href: string;
}

/** Tenants › tenant › environment › key. */
export const Crumbs: FC<{ items: Crumb[] }> = ({ items }) => (
  <nav class="crumbs" aria-label="Breadcrumb">
    {items.map((item, i) => (
      <>
        {i > 0 && <span aria-hidden="true"> › </span>}
        <a href={item.href} aria-current={i === items.length - 1 ? "page" : undefined}>
          {item.label}
        </a>
      </>
    ))}
  </nav>
);

/** The crumbs down to a tenant. */
export function tenantCrumbs(session: DashboardSession, tenant: Pick<TenantJson, "id" | "name">): Crumb[] {
  const first: Crumb[] = isOperator(session) ? [{ label: "Tenants", href: TENANTS }] : [];
  return [...first, { label: tenant.name, href: pageOf(tenant.id, "tenant", tenant.id) }];
}

/** A tenant's or key's status as text in a badge (never colour alone). */
export const StatusBadge: FC<{ status: TenantJson["status"] | ApiKeyJson["status"] }> = ({ status }) => (
  <span class={status === "active" ? "badge ok" : status === "expired" ? "badge warn" : "badge bad"}>{status}</span>
);

/** A budget's amount (or usage) in its unit. */
export function budgetAmount(kind: BudgetJson["kind"], value: number): string {
  if (kind === "spend") return usd(value);
  return `${num(value)} ${kind}`;
}

/** What a budget is, in words: "Tokens per month". */
export function budgetLabel(b: Pick<BudgetJson, "kind" | "period">): string {
  const kind = b.kind === "spend" ? "Spend" : b.kind === "tokens" ? "Tokens" : "Requests";
  return b.period === "total" ? `${kind} in total` : `${kind} per ${b.period}`;
}

/** The answer to creating or rotating a key: the only page that ever shows the full key. */
export const KeyShownOnce: FC<{
  session: DashboardSession;
  title: string;
  intro: string;
  apiKey: ApiKeyJson & { key: string };
  /** The key a rotation replaced. */
  rotatedFrom?: ApiKeyJson;
  crumbs: Crumb[];
}> = (p) => (
  <Page title={p.title} session={p.session} current="/tenants">
    <Crumbs items={p.crumbs} />
    <h1>{p.title}</h1>
    <p>{p.intro}</p>
    <div class="secret">
      <label for="new-api-key">
        {`API key “${p.apiKey.name}”`}
        <input id="new-api-key" type="text" value={p.apiKey.key} readonly autocomplete="off" spellcheck={false} />
      </label>
      <button type="button" data-copy="new-api-key" hidden>
        Copy the key
      </button>
    </div>
    <p role="alert">
      <strong>Copy this key now: it will not be shown again.</strong> Switchyard keeps only its hash; if it is lost, rotate the key or create a new one.
    </p>
    {p.rotatedFrom && (
      <p>
        {"The old key "}
        <a href={pageOf(p.rotatedFrom.tenant_id, "key", p.rotatedFrom.id)} class="mono">{`${p.rotatedFrom.prefix}…`}</a>
        {" stops working at "}
        <Time at={p.rotatedFrom.expires_at} />.
      </p>
    )}
    <p>
      <a href={pageOf(p.apiKey.tenant_id, "key", p.apiKey.id)}>Go to the new key’s page</a>
      {" · "}
      <a href={pageOf(p.apiKey.tenant_id, "environment", p.apiKey.environment_id)}>Back to the environment</a>
    </p>
  </Page>
);

/** A link to the next page of a list, when there is one. */
export const NextPage: FC<{ path: string; cursor: string | null; label: string }> = ({ path, cursor, label }) =>
  cursor === null ? null : (
    <p>
      <a href={`${path}?cursor=${encodeURIComponent(cursor)}`}>{label}</a>
    </p>
  );
