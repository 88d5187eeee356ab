/** @jsxImportSource hono/jsx */
/**
 * Limits and budgets of a tenant, environment or key on the tenant pages: what is configured, the
 * live counters (GET /admin/counters) with how close each is to its cap, and the forms that change
 * them (PUT/DELETE /admin/limits, POST/PATCH/DELETE /admin/budgets).
 */
import { Hono } from "hono";
import type { FC } from "hono/jsx";
import type { BudgetJson, CountersJson, LimitsJson, LiveCounterJson } from "../../admin/wire.ts";
import { ApiError } from "../../errors.ts";
import { adminCall, adminGet } from "../bridge.ts";
import { sessionOf, type DashboardContext, type DashboardEnv } from "../env.ts";
import { formOf, redirectWith } from "../http.ts";
import type { DashboardSession } from "../session.ts";
import { Action, Csrf, Meter, num } from "../ui.tsx";
import { budgetAmount, budgetLabel, pageOf, TENANTS, type SettingsScope } from "./tenants-parts.tsx";

/** A budget with its usage in the current period (null: the counters could not be read). */
export interface BudgetRow {
  budget: BudgetJson;
  usage: { used: number; leased: number; free: number } | null;
}

/** What a page shows about an entity's limits and budgets. */
export interface Settings {
  scope: SettingsScope;
  scopeId: string;
  limits: LimitsJson;
  live: CountersJson["live"] | null;
  budgets: BudgetRow[];
  /** Why the counters are missing (Redis unavailable), if they are. */
  countersError: string | null;
}

/** Loads an entity's limits, budgets and counters; the counters missing only leave their numbers out. */
export async function loadSettings(c: DashboardContext, session: DashboardSession, scope: SettingsScope, scopeId: string): Promise<Settings> {
  const id = encodeURIComponent(scopeId);
  const counters = await adminCall<CountersJson>(c, session, "GET", `/admin/counters/${scope}/${id}`);
  if (counters.ok) {
    const d = counters.data;
    return { scope, scopeId, limits: d.limits, live: d.live, budgets: d.budgets.map((b) => ({ budget: b.budget, usage: { used: b.used, leased: b.leased, free: b.free } })), countersError: null };
  }
  // Without counters (Redis down: 503) the page still shows what is configured; a 404 or 403 from
  // these reads becomes the page's error.
  const [limits, budgets] = await Promise.all([
    adminGet<LimitsJson>(c, session, `/admin/limits/${scope}/${id}`),
    adminGet<{ data: BudgetJson[] }>(c, session, `/admin/budgets?scope=${scope}&scope_id=${id}&limit=200`),
  ]);
  return { scope, scopeId, limits, live: null, budgets: budgets.data.map((budget) => ({ budget, usage: null })), countersError: counters.error.message };
}

const LIMIT_ROWS = [
  { field: "rpm", label: "Requests per minute", live: "requests_per_minute" },
  { field: "tpm", label: "Tokens per minute", live: "tokens_per_minute" },
  { field: "concurrency", label: "Requests in flight", live: "concurrency" },
] as const;

/** Concurrency caps apply to tenants and keys only (limits/admin.ts). */
function hasConcurrency(scope: SettingsScope): boolean {
  return scope !== "environment";
}

const LiveCells: FC<{ counter: LiveCounterJson | null | undefined; available: boolean }> = ({ counter, available }) => {
  if (!counter) {
    return (
      <>
        <td class="num muted">–</td>
        <td class="num muted">–</td>
        <td class="num muted">–</td>
        <td class="muted">{available ? "no cap" : "unavailable"}</td>
      </>
    );
  }
  return (
    <>
      <td class="num">{num(counter.used)}</td>
      <td class="num">{num(counter.leased)}</td>
      <td class="num">{num(counter.free)}</td>
      <td>
        <Meter used={counter.limit - counter.free} cap={counter.limit} />
      </td>
    </>
  );
};

/** The limits table (configured and live) and, for those who may change them, the edit form. */
export const LimitsSection: FC<{ session: DashboardSession; tenantId: string; settings: Settings; editable: boolean }> = ({ session, tenantId, settings, editable }) => {
  const { limits, live, scope } = settings;
  const rows = LIMIT_ROWS.filter((r) => r.field !== "concurrency" || hasConcurrency(scope));
  const action = `${TENANTS}/${encodeURIComponent(tenantId)}/settings/${scope}/${encodeURIComponent(settings.scopeId)}/limits`;
  return (
    <section aria-labelledby="limits-heading">
      <h2 id="limits-heading">Limits</h2>
      {settings.countersError && <p class="muted">{`Live counters are unavailable: ${settings.countersError}`}</p>}
      <table>
        <caption>Rate limits: the default, this {scope}’s override and what applies, with the live counters across the deployment</caption>
        <thead>
          <tr>
            <th scope="col">Limit</th>
            <th scope="col" class="num">Default</th>
            <th scope="col" class="num">Override</th>
            <th scope="col" class="num">Applies</th>
            <th scope="col" class="num">Used</th>
            <th scope="col" class="num">Leased</th>
            <th scope="col" class="num">Free</th>
            <th scope="col">Of the cap</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((r) => (
            <tr>
              <th scope="row">{r.label}</th>
              <td class="num">{limits.defaults[r.field] === null ? "unlimited" : num(limits.defaults[r.field])}</td>
              <td class="num">{limits.override?.[r.field] == null ? "none" : num(limits.override[r.field])}</td>
              <td class="num">{limits.effective[r.field] === null ? "unlimited" : num(limits.effective[r.field])}</td>
              <LiveCells counter={live?.[r.live]} available={live !== null} />
            </tr>
          ))}
        </tbody>
      </table>
      {editable && (
        <>
          <form method="post" action={action} class="row">
            <Csrf session={session} />
            {rows.map((r) => (
              <label>
                {`${r.label} (empty: default)`}
                <input type="number" name={r.field} min="1" step="1" inputmode="numeric" value={limits.override?.[r.field] == null ? "" : String(limits.override[r.field])} />
              </label>
            ))}
            <button type="submit">Save limits</button>
          </form>
          {limits.override !== null && <Action session={session} action={`${action}/reset`} label="Reset limits to the defaults" confirm="Remove this override and go back to the default limits?" />}
        </>
      )}
    </section>
  );
};

/** The budgets table with each one's usage in its period and, for those who may, the forms. */
export const BudgetsSection: FC<{ session: DashboardSession; tenantId: string; settings: Settings; editable: boolean }> = ({ session, tenantId, settings, editable }) => {
  const base = `${TENANTS}/${encodeURIComponent(tenantId)}/settings/${settings.scope}/${encodeURIComponent(settings.scopeId)}/budgets`;
  return (
    <section aria-labelledby="budgets-heading">
      <h2 id="budgets-heading">Budgets and quotas</h2>
      {settings.budgets.length === 0 ? (
        <p class="muted">{`No budgets on this ${settings.scope}.`}</p>
      ) : (
        <table>
          <caption>Budgets, with their use in the current period (used, held in isolates’ leases, free)</caption>
          <thead>
            <tr>
              <th scope="col">Budget</th>
              <th scope="col" class="num">Cap</th>
              <th scope="col" class="num">Used</th>
              <th scope="col" class="num">Leased</th>
              <th scope="col" class="num">Free</th>
              <th scope="col">Of the cap</th>
              {editable && <th scope="col">Change</th>}
            </tr>
          </thead>
          <tbody>
            {settings.budgets.map(({ budget, usage }) => (
              <tr>
                <th scope="row">{budgetLabel(budget)}</th>
                <td class="num">{budgetAmount(budget.kind, budget.amount)}</td>
                <td class="num">{usage ? budgetAmount(budget.kind, usage.used) : "–"}</td>
                <td class="num">{usage ? budgetAmount(budget.kind, usage.leased) : "–"}</td>
                <td class="num">{usage ? budgetAmount(budget.kind, usage.free) : "–"}</td>
                <td>{usage ? <Meter used={budget.amount - usage.free} cap={budget.amount} /> : <span class="muted">unavailable</span>}</td>
                {editable && (
                  <td>
                    <form method="post" action={`${base}/${encodeURIComponent(budget.id)}`} class="row">
                      <Csrf session={session} />
                      <label>
                        {`New cap (${amountUnit(budget.kind)})`}
                        <input type="text" name="amount" inputmode="decimal" required value={amountInput(budget.kind, budget.amount)} size={10} />
                      </label>
                      <button type="submit" class="secondary">{`Change ${budgetLabel(budget).toLowerCase()}`}</button>
                    </form>
                    <Action session={session} action={`${base}/${encodeURIComponent(budget.id)}/delete`} label={`Delete ${budgetLabel(budget).toLowerCase()}`} danger confirm="Delete this budget? Its usage so far is forgotten." />
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {editable && (
        <form method="post" action={base} class="row">
          <Csrf session={session} />
          <label>
            Kind
            <select name="kind">
              <option value="tokens">Tokens</option>
              <option value="requests">Requests</option>
              <option value="spend">Spend (US dollars)</option>
            </select>
          </label>
          <label>
            Period
            <select name="period">
              <option value="month">Per month</option>
              <option value="day">Per day</option>
              <option value="total">In total</option>
            </select>
          </label>
          <label>
            Cap (tokens, requests, or dollars for spend)
            <input type="text" name="amount" inputmode="decimal" required />
          </label>
          <button type="submit">Add budget</button>
        </form>
      )}
    </section>
  );
};

function amountUnit(kind: BudgetJson["kind"]): string {
  return kind === "spend" ? "US dollars" : kind;
}

function amountInput(kind: BudgetJson["kind"], amount: number): string {
  return kind === "spend" ? String(amount / 1_000_000) : String(amount);
}

/** A budget cap from the form: whole tokens or requests, or dollars (to micro-USD) for spend. */
function parseAmount(kind: string, text: string | undefined): number | null {
  const t = (text ?? "").trim().replaceAll(",", "").replace(/^\$/, "");
  if (kind === "spend") return /^\d+(\.\d{1,6})?$/.test(t) ? Math.round(Number(t) * 1_000_000) : null;
  return /^\d+$/.test(t) ? Number(t) : null;
}

function scopeOf(value: string): SettingsScope | null {
  return value === "tenant" || value === "environment" || value === "key" ? value : null;
}

/** The target of a settings form and the page to go back to. */
function target(c: DashboardContext): { scope: SettingsScope; scopeId: string; back: string } {
  const scope = scopeOf(c.req.param("scope") ?? "");
  const scopeId = c.req.param("scopeId");
  const tenantId = c.req.param("id");
  if (!scope || !scopeId || !tenantId) throw new ApiError("not_found", "No such page: limits and budgets belong to a tenant, an environment or a key.");
  return { scope, scopeId, back: pageOf(tenantId, scope, scopeId) };
}

/** The settings routes, under /dashboard/tenants/:id/settings/:scope/:scopeId. */
export const settingsPages = new Hono<DashboardEnv>()
  .post("/:id/settings/:scope/:scopeId/limits", async (c) => {
    const t = target(c);
    const form = await formOf(c);
    const body: Record<string, number | null> = {};
    for (const r of LIMIT_ROWS) {
      if (r.field === "concurrency" && !hasConcurrency(t.scope)) continue;
      const v = (form[r.field] ?? "").trim().replaceAll(",", "");
      if (v !== "" && !/^[1-9]\d*$/.test(v)) return redirectWith(c, t.back, { kind: "error", text: `${r.label} must be a whole number of 1 or more, or empty for the default.` });
      body[r.field] = v === "" ? null : Number(v);
    }
    const res = await adminCall(c, sessionOf(c), "PUT", `/admin/limits/${t.scope}/${encodeURIComponent(t.scopeId)}`, body);
    return redirectWith(c, t.back, res.ok ? { kind: "ok", text: "Limits saved. The gateway applies them within a few seconds." } : { kind: "error", text: res.error.message });
  })
  .post("/:id/settings/:scope/:scopeId/limits/reset", async (c) => {
    const t = target(c);
    const res = await adminCall(c, sessionOf(c), "DELETE", `/admin/limits/${t.scope}/${encodeURIComponent(t.scopeId)}`);
    return redirectWith(c, t.back, res.ok ? { kind: "ok", text: "Limits reset to the defaults." } : { kind: "error", text: res.error.message });
  })
  .post("/:id/settings/:scope/:scopeId/budgets", async (c) => {
    const t = target(c);
    const form = await formOf(c);
    const kind = form.kind ?? "";
    const amount = parseAmount(kind, form.amount);
    if (amount === null) return redirectWith(c, t.back, { kind: "error", text: kind === "spend" ? "The cap must be an amount in dollars, like 25 or 12.50." : "The cap must be a whole number." });
    const res = await adminCall(c, sessionOf(c), "POST", "/admin/budgets", { scope: t.scope, scope_id: t.scopeId, kind, period: form.period, amount });
    return redirectWith(c, t.back, res.ok ? { kind: "ok", text: "Budget added." } : { kind: "error", text: res.error.message });
  })
  .post("/:id/settings/:scope/:scopeId/budgets/:budgetId", async (c) => {
    const t = target(c);
    const session = sessionOf(c);
    const path = `/admin/budgets/${encodeURIComponent(c.req.param("budgetId"))}`;
    const current = await adminCall<BudgetJson>(c, session, "GET", path);
    if (!current.ok) return redirectWith(c, t.back, { kind: "error", text: current.error.message });
    const amount = parseAmount(current.data.kind, (await formOf(c)).amount);
    if (amount === null) return redirectWith(c, t.back, { kind: "error", text: current.data.kind === "spend" ? "The cap must be an amount in dollars, like 25 or 12.50." : "The cap must be a whole number." });
    const res = await adminCall(c, session, "PATCH", path, { amount });
    return redirectWith(c, t.back, res.ok ? { kind: "ok", text: "Budget changed." } : { kind: "error", text: res.error.message });
  })
  .post("/:id/settings/:scope/:scopeId/budgets/:budgetId/delete", async (c) => {
    const t = target(c);
    const res = await adminCall(c, sessionOf(c), "DELETE", `/admin/budgets/${encodeURIComponent(c.req.param("budgetId"))}`);
    return redirectWith(c, t.back, res.ok ? { kind: "ok", text: "Budget deleted." } : { kind: "error", text: res.error.message });
  });
