/** @jsxImportSource hono/jsx */
/**
 * Usage and billing (`/dashboard/usage`): usage over a chosen range by model, environment, key (and
 * tenant, for the operator), credits, each tenant's Stripe state, and for the operator the monthly
 * billing export and the reconciliation drift. Everything is read through the admin API; the two
 * downloads hand on the admin API's own CSV (or JSON) unchanged.
 */
import { Hono } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { ListBody } from "../../admin/pagination.ts";
import type { ApiKeyJson, CreditGrantJson, EnvironmentJson, ReconciliationJson, TenantJson } from "../../admin/wire.ts";
import type { BillingCustomerJson } from "../../billing/customers-admin.ts";
import { ApiError } from "../../errors.ts";
import { adminCall, adminGet, adminList, type AdminAnswer } from "../bridge.ts";
import { sessionOf, type DashboardContext, type DashboardEnv } from "../env.ts";
import { takeFlash } from "../http.ts";
import type { DashboardSession } from "../session.ts";
import { BASE, Page } from "../ui.tsx";
import { BillingExportView, ReconciliationView, StripeView } from "./usage-billing.tsx";
import { creditActions, CreditsView } from "./usage-credits.tsx";
import { csvFileName, previousMonth, rangeQuery, readRange, usageQuery, type RangeForm } from "./usage-data.ts";
import { namesFor, RangeFormView, ReportView, type UsageReport } from "./usage-report.tsx";

const CREDITS_PAGE = 50;
/** Reconciliation windows that ended this recently are "latest". */
const RECENT_HOURS = 6;
const HOUR_MS = 3_600_000;

/** The admin API's refusal as the page's error (its status and message). */
function failure(answer: Extract<AdminAnswer<unknown>, { ok: false }>): ApiError {
  const code = answer.error.code;
  const known = code === "not_found" || code === "permission_denied" || code === "invalid_value" ? code : "upstream_error";
  return new ApiError(known, answer.error.message, { status: answer.status as ContentfulStatusCode });
}

function requireOperatorSession(session: DashboardSession, what: string): void {
  if (session.actor.kind !== "operator") throw new ApiError("permission_denied", `Only the operator can ${what}.`);
}

function withTenant(path: string, tenantId: string): string {
  if (tenantId === "") return path;
  return `${path}${path.includes("?") ? "&" : "?"}tenant_id=${encodeURIComponent(tenantId)}`;
}

/** Everything the page shows besides the report, read in parallel (the connection cap queues the rest). */
async function sections(c: DashboardContext, session: DashboardSession, range: RangeForm, creditsCursor: string | undefined) {
  const operator = session.actor.kind === "operator";
  const now = Date.now();
  const none = Promise.resolve({ items: [], complete: true });
  const [tenants, environments, keys, credits, customers, recent, alerts] = await Promise.all([
    operator ? adminList<TenantJson>(c, session, "/admin/tenants") : none,
    range.groupBy === "environment" ? adminList<EnvironmentJson>(c, session, withTenant("/admin/environments", range.tenantId)) : none,
    range.groupBy === "key" ? adminList<ApiKeyJson>(c, session, withTenant("/admin/keys", range.tenantId)) : none,
    adminGet<ListBody<CreditGrantJson>>(c, session, withTenant(`/admin/credits?limit=${CREDITS_PAGE}${creditsCursor ? `&cursor=${encodeURIComponent(creditsCursor)}` : ""}`, range.tenantId)),
    adminList<BillingCustomerJson>(c, session, withTenant("/admin/billing/customers", range.tenantId)),
    operator ? adminGet<ListBody<ReconciliationJson>>(c, session, `/admin/reconciliation?limit=200&since=${new Date(now - RECENT_HOURS * HOUR_MS).toISOString()}`) : null,
    operator ? adminGet<ListBody<ReconciliationJson>>(c, session, `/admin/reconciliation?limit=20&alert=true&since=${new Date(now - 7 * 24 * HOUR_MS).toISOString()}`) : null,
  ]);
  return { tenants: tenants.items, environments: environments.items, keys: keys.items, credits, customers, recent, alerts };
}

/** The usage page and its downloads and actions. */
export const usagePages = new Hono<DashboardEnv>()
  .get("/", async (c) => {
    const session = sessionOf(c);
    const operator = session.actor.kind === "operator";
    const query = c.req.query();
    const range = readRange(query, session);
    // The report first: another tenant's id is a 404 page before anything else is read.
    const report = await adminCall<UsageReport>(c, session, "GET", `/admin/usage?${usageQuery(range, "json")}`);
    if (!report.ok && report.status !== 400) throw failure(report);
    const data = await sections(c, session, range, query.credits_cursor);
    const names = namesFor(range.groupBy, data);
    const moreCredits = data.credits.next_cursor === null ? null : `${BASE}/usage?${rangeQuery(range)}&credits_cursor=${encodeURIComponent(data.credits.next_cursor)}#credits`;
    return c.html(
      <Page title="Usage & billing" session={session} current="/usage" flash={takeFlash(c)}>
        <h1>Usage &amp; billing</h1>
        <section aria-labelledby="usage">
          <h2 id="usage">Usage</h2>
          <RangeFormView range={range} operator={operator} tenants={data.tenants} />
          {report.ok ? (
            <ReportView report={report.data} range={range} names={names} />
          ) : (
            <p class="flash error" role="alert">
              {report.error.message}
            </p>
          )}
        </section>
        <CreditsView session={session} grants={data.credits.data} more={moreCredits} tenants={data.tenants} tenantId={range.tenantId} />
        <StripeView customers={data.customers.items} complete={data.customers.complete} operator={operator} />
        {operator && <BillingExportView period={/^\d{4}-\d{2}$/.test(query.period ?? "") ? (query.period ?? "") : previousMonth(new Date())} tenantId={range.tenantId} />}
        {operator && data.recent && data.alerts && <ReconciliationView recent={data.recent.data} alerts={data.alerts.data} sinceHours={RECENT_HOURS} />}
      </Page>,
      report.ok ? 200 : 400,
    );
  })
  .get("/export.csv", async (c) => {
    const session = sessionOf(c);
    const range = readRange(c.req.query(), session);
    const answer = await adminCall<string>(c, session, "GET", `/admin/usage?${usageQuery(range, "csv")}`);
    if (!answer.ok) throw failure(answer);
    return c.body(answer.text, 200, { "content-type": "text/csv; charset=utf-8", "content-disposition": `attachment; filename="${csvFileName("usage", range)}"` });
  })
  .get("/billing-export", async (c) => {
    const session = sessionOf(c);
    requireOperatorSession(session, "download the billing export");
    const period = c.req.query("period") ?? "";
    const format = c.req.query("format") === "json" ? "json" : "csv";
    const tenantId = (c.req.query("tenant_id") ?? "").trim();
    const q = new URLSearchParams({ period, format });
    if (tenantId !== "") q.set("tenant_id", tenantId);
    const answer = await adminCall<unknown>(c, session, "GET", `/admin/billing/export?${q.toString()}`);
    if (!answer.ok) throw failure(answer);
    const safe = (s: string) => s.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 80);
    const name = `billing-${safe(period)}${tenantId === "" ? "" : `-${safe(tenantId)}`}.${format}`;
    return c.body(answer.text, 200, {
      "content-type": format === "csv" ? "text/csv; charset=utf-8" : "application/json",
      "content-disposition": `attachment; filename="${name}"`,
    });
  })
  .route("/", creditActions);
