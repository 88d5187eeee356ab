/** @jsxImportSource hono/jsx */
/**
 * Credits on the usage page: the grants (`GET /admin/credits`), and for the operator the grant form
 * (`POST /admin/credits`) and a void button per grant still worth something (`POST /admin/credits/:id/void`).
 */
import { Hono } from "hono";
import type { FC } from "hono/jsx";
import type { CreditGrantJson, TenantJson } from "../../admin/wire.ts";
import { adminCall } from "../bridge.ts";
import { sessionOf, type DashboardEnv } from "../env.ts";
import { formOf, redirectWith } from "../http.ts";
import type { DashboardSession } from "../session.ts";
import { Action, BASE, Csrf, Time, usd } from "../ui.tsx";

const KINDS = { free_tier: "Free tier", promotion: "Promotion", adjustment: "Adjustment" } as const;
const BACK = `${BASE}/usage#credits`;

function grantState(g: CreditGrantJson, now: number): { label: string; badge: "ok" | "bad" | "warn" } {
  if (g.remaining_micros <= 0) return { label: "Used up or voided", badge: "warn" };
  if (g.expires_at !== null && Date.parse(g.expires_at) <= now) return { label: "Expired", badge: "bad" };
  return { label: "Active", badge: "ok" };
}

/** The credits section: grants, and the operator's grant form and void buttons. */
export const CreditsView: FC<{ session: DashboardSession; grants: CreditGrantJson[]; more: string | null; tenants: TenantJson[]; tenantId: string }> = (p) => {
  const operator = p.session.actor.kind === "operator";
  const names = new Map(p.tenants.map((t) => [t.id, t.name]));
  const now = Date.now();
  return (
    <section aria-labelledby="credits">
      <h2 id="credits">Credits</h2>
      <p class="muted">Credits pay for usage before anything is billable; the usage flush draws from the oldest grant that can pay.</p>
      <table>
        <caption>Credit grants, newest first</caption>
        <thead>
          <tr>
            {operator && <th scope="col">Tenant</th>}
            <th scope="col">Kind</th>
            <th scope="col" class="num">Amount</th>
            <th scope="col" class="num">Used</th>
            <th scope="col" class="num">Remaining</th>
            <th scope="col">State</th>
            <th scope="col">Expires</th>
            <th scope="col">Granted</th>
            <th scope="col">Note</th>
            {operator && <th scope="col">Actions</th>}
          </tr>
        </thead>
        <tbody>
          {p.grants.length === 0 && (
            <tr>
              <td colspan={operator ? 10 : 8} class="muted">
                No credit grants.
              </td>
            </tr>
          )}
          {p.grants.map((g) => {
            const state = grantState(g, now);
            return (
              <tr data-grant={g.id}>
                {operator && (
                  <td>
                    {names.get(g.tenant_id) ?? ""} <code>{g.tenant_id}</code>
                  </td>
                )}
                <td>{KINDS[g.kind]}</td>
                <td class="num">{usd(g.amount_micros)}</td>
                <td class="num">{usd(g.used_micros)}</td>
                <td class="num">{usd(g.remaining_micros)}</td>
                <td>
                  <span class={`badge ${state.badge}`}>{state.label}</span>
                </td>
                <td>{g.expires_at === null ? <span class="muted">never</span> : <Time at={g.expires_at} />}</td>
                <td>
                  <Time at={g.created_at} />
                </td>
                <td>{g.note}</td>
                {operator && (
                  <td>
                    {g.remaining_micros > 0 && (
                      <Action
                        session={p.session}
                        action={`${BASE}/usage/credits/${encodeURIComponent(g.id)}/void`}
                        label={`Void ${usd(g.remaining_micros)} left`}
                        confirm={`Void this grant? Its remaining ${usd(g.remaining_micros)} will no longer pay for usage; what was used stays on record.`}
                        danger
                      />
                    )}
                  </td>
                )}
              </tr>
            );
          })}
        </tbody>
      </table>
      {p.more !== null && (
        <p>
          <a href={p.more}>Older grants</a>
        </p>
      )}
      {operator && p.session.role !== "viewer" && <GrantForm session={p.session} tenants={p.tenants} tenantId={p.tenantId} />}
    </section>
  );
};

const GrantForm: FC<{ session: DashboardSession; tenants: TenantJson[]; tenantId: string }> = (p) => (
  <form method="post" action={`${BASE}/usage/credits`} class="stack" aria-labelledby="grant-credits">
    <h3 id="grant-credits">Grant credits</h3>
    <Csrf session={p.session} />
    <label>
      Tenant
      <select name="tenant_id" required>
        <option value="">Choose a tenant</option>
        {p.tenants.map((t) => (
          <option value={t.id} selected={t.id === p.tenantId}>{`${t.name} (${t.id})`}</option>
        ))}
      </select>
    </label>
    <label>
      Kind
      <select name="kind">
        {Object.entries(KINDS).map(([value, label]) => (
          <option value={value}>{label}</option>
        ))}
      </select>
    </label>
    <label>
      Amount (US dollars)
      <input type="number" name="amount_usd" min="0.000001" step="any" inputmode="decimal" required />
    </label>
    <label>
      Expires on (UTC day, optional)
      <input type="date" name="expires_on" />
    </label>
    <label>
      Note (optional)
      <input type="text" name="note" maxlength={500} />
    </label>
    <button type="submit">Grant credits</button>
  </form>
);

/** The credit actions: POST /dashboard/usage/credits (grant) and /credits/:id/void. */
export const creditActions = new Hono<DashboardEnv>()
  .post("/credits", async (c) => {
    const session = sessionOf(c);
    const form = await formOf(c);
    const amount = Number((form.amount_usd ?? "").trim());
    if ((form.amount_usd ?? "").trim() === "" || !Number.isFinite(amount) || amount <= 0) {
      return redirectWith(c, BACK, { kind: "error", text: "Enter the amount in US dollars, a number above zero (e.g. 25 or 12.50)." });
    }
    const expires = (form.expires_on ?? "").trim();
    if (expires !== "" && !/^\d{4}-\d{2}-\d{2}$/.test(expires)) {
      return redirectWith(c, BACK, { kind: "error", text: "Enter the expiry as a day (YYYY-MM-DD), or leave it empty for a grant that never expires." });
    }
    const body = {
      tenant_id: form.tenant_id ?? "",
      kind: form.kind ?? "",
      amount_usd: amount,
      expires_at: expires === "" ? null : `${expires}T00:00:00Z`,
      note: form.note ?? "",
    };
    const res = await adminCall<CreditGrantJson>(c, session, "POST", "/admin/credits", body);
    if (!res.ok) return redirectWith(c, BACK, { kind: "error", text: res.error.message });
    return redirectWith(c, BACK, { kind: "ok", text: `Granted ${usd(res.data.amount_micros)} of credits to tenant ${res.data.tenant_id} (grant ${res.data.id}).` });
  })
  .post("/credits/:id/void", async (c) => {
    const id = c.req.param("id");
    const res = await adminCall<CreditGrantJson>(c, sessionOf(c), "POST", `/admin/credits/${encodeURIComponent(id)}/void`);
    if (!res.ok) return redirectWith(c, BACK, { kind: "error", text: res.error.message });
    return redirectWith(c, BACK, { kind: "ok", text: `Voided grant ${id}: nothing more is paid from it.` });
  });
