/** @jsxImportSource hono/jsx */
/**
 * Billing on the usage page: each tenant's Stripe state (`GET /admin/billing/customers`), the monthly
 * billing export (`GET /admin/billing/export`, operator only) and the reconciliation of metered
 * against engine-counted tokens (`GET /admin/reconciliation`, operator only).
 */
import type { FC } from "hono/jsx";
import type { ReconciliationJson } from "../../admin/wire.ts";
import type { BillingCustomerJson } from "../../billing/customers-admin.ts";
import { BASE, num, Time } from "../ui.tsx";

/** Latest windows shown per node. */
export const WINDOWS_PER_NODE = 3;

/** Each tenant's Stripe link and the state its webhooks left. */
export const StripeView: FC<{ customers: BillingCustomerJson[]; complete: boolean; operator: boolean }> = ({ customers, complete, operator }) => (
  <section aria-labelledby="stripe">
    <h2 id="stripe">Stripe status</h2>
    <p class="muted">Payment and subscription events from Stripe set each tenant's status and plan; a paid invoice moves its billed-through date.</p>
    <table>
      <caption>{operator ? "Tenants and their Stripe customers" : "Your organisation's Stripe customer"}</caption>
      <thead>
        <tr>
          <th scope="col">Tenant</th>
          <th scope="col">Stripe customer</th>
          <th scope="col">Status</th>
          <th scope="col">Plan</th>
          <th scope="col">Billed through</th>
          <th scope="col">Last payment event</th>
          <th scope="col">Last subscription event</th>
        </tr>
      </thead>
      <tbody>
        {customers.length === 0 && (
          <tr>
            <td colspan={7} class="muted">
              No tenants.
            </td>
          </tr>
        )}
        {customers.map((t) => (
          <tr data-tenant={t.tenant_id}>
            <th scope="row">
              {`${t.name} `}
              <code>{t.tenant_id}</code>
            </th>
            <td>{t.stripe_customer_id === null ? <span class="muted">not linked</span> : <code>{t.stripe_customer_id}</code>}</td>
            <td>
              <span class={`badge ${t.status === "active" ? "ok" : "bad"}`}>{t.status === "active" ? "Active" : "Suspended"}</span>
            </td>
            <td>{t.plan}</td>
            <td>
              <Time at={t.billed_through} />
            </td>
            <td>
              <Time at={t.payment_event_at} />
            </td>
            <td>
              <Time at={t.subscription_event_at} />
            </td>
          </tr>
        ))}
      </tbody>
    </table>
    {!complete && <p class="muted">Only the first 1,000 tenants are listed; choose a tenant above to see its line.</p>}
  </section>
);

/** The monthly export: a month and a format, downloaded through /dashboard/usage/billing-export. */
export const BillingExportView: FC<{ period: string; tenantId: string }> = ({ period, tenantId }) => (
  <section aria-labelledby="billing-export">
    <h2 id="billing-export">Monthly billing export</h2>
    <p class="muted">
      Invoice lines per tenant and model for a calendar month (UTC), from the hourly rollups; credits already drawn are shown per line and only the rest is billable. A tenant whose billed-through date reaches the month's end is marked billed.
    </p>
    <form method="get" action={`${BASE}/usage/billing-export`} class="row" aria-label="Billing export">
      <label>
        Month
        <input type="month" name="period" value={period} pattern="\d{4}-\d{2}" placeholder="YYYY-MM" required />
      </label>
      <label>
        Format
        <select name="format">
          <option value="csv">CSV</option>
          <option value="json">JSON</option>
        </select>
      </label>
      {tenantId !== "" && <input type="hidden" name="tenant_id" value={tenantId} />}
      <button type="submit">{tenantId === "" ? "Download billing export" : `Download billing export of ${tenantId}`}</button>
    </form>
  </section>
);

function windowState(r: ReconciliationJson): { label: string; badge: "ok" | "bad" | "warn" } {
  if (r.alert) return { label: "Alert: drift over threshold", badge: "bad" };
  if (r.engine_restarted) return { label: "Engine restarted", badge: "warn" };
  return { label: "OK", badge: "ok" };
}

const ReconRow: FC<{ r: ReconciliationJson; first: boolean }> = ({ r, first }) => {
  const state = windowState(r);
  const drift = r.drift_prompt_tokens + r.drift_generation_tokens;
  return (
    <tr data-reconciliation={r.id} class={r.alert ? "alert" : undefined}>
      <th scope="row">{first ? <code>{r.node_id}</code> : <span class="muted">{r.node_id}</span>}</th>
      <td>
        <Time at={r.window_start} /> – <Time at={r.window_end} />
      </td>
      <td class="num">{num(r.metered_prompt_tokens + r.metered_completion_tokens)}</td>
      <td class="num">{num(r.engine_prompt_tokens + r.engine_generation_tokens)}</td>
      <td class="num">{`${drift > 0 ? "+" : ""}${num(drift)} (prompt ${num(r.drift_prompt_tokens)}, generation ${num(r.drift_generation_tokens)})`}</td>
      <td class="num">{`${(r.drift_ratio * 100).toFixed(2)}%`}</td>
      <td>
        <span class={`badge ${state.badge}`}>{state.label}</span>
      </td>
    </tr>
  );
};

const ReconTable: FC<{ caption: string; rows: ReconciliationJson[]; empty: string; grouped: boolean }> = ({ caption, rows, empty, grouped }) => (
  <table>
    <caption>{caption}</caption>
    <thead>
      <tr>
        <th scope="col">Node</th>
        <th scope="col">Window</th>
        <th scope="col" class="num">Metered tokens</th>
        <th scope="col" class="num">Engine tokens</th>
        <th scope="col" class="num">Drift (engine − metered)</th>
        <th scope="col" class="num">Drift ratio</th>
        <th scope="col">State</th>
      </tr>
    </thead>
    <tbody>
      {rows.length === 0 && (
        <tr>
          <td colspan={7} class="muted">
            {empty}
          </td>
        </tr>
      )}
      {rows.map((r, i) => (
        <ReconRow r={r} first={!grouped || i === 0 || rows[i - 1]?.node_id !== r.node_id} />
      ))}
    </tbody>
  </table>
);

/** The latest windows of each node (newest first), and the recent alerts. */
export const ReconciliationView: FC<{ recent: ReconciliationJson[]; alerts: ReconciliationJson[]; sinceHours: number }> = ({ recent, alerts, sinceHours }) => {
  const byNode = new Map<string, ReconciliationJson[]>();
  for (const r of recent) {
    const list = byNode.get(r.node_id) ?? [];
    if (list.length < WINDOWS_PER_NODE) list.push(r);
    byNode.set(r.node_id, list);
  }
  const rows = [...byNode.keys()].sort().flatMap((n) => byNode.get(n) ?? []);
  const alerting = [...byNode.values()].filter((l) => l[0]?.alert === true).length;
  return (
    <section aria-labelledby="reconciliation">
      <h2 id="reconciliation">Reconciliation drift</h2>
      <p>
        {`Metered tokens against the engines' own counters, per node and hourly window (docs/reconciliation.md). `}
        {alerting > 0 ? <strong>{`${alerting} node${alerting === 1 ? "" : "s"} alerting in the latest window.`}</strong> : "No node is alerting in its latest window."}
      </p>
      <ReconTable
        caption={`Latest ${WINDOWS_PER_NODE} windows per node (windows ended in the last ${sinceHours} hours)`}
        rows={rows}
        grouped
        empty={`No reconciliation window ended in the last ${sinceHours} hours.`}
      />
      <ReconTable caption="Recent alerts (last 7 days, newest first)" rows={alerts} grouped={false} empty="No alerts in the last 7 days." />
    </section>
  );
};
