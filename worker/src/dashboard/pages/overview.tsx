/** @jsxImportSource hono/jsx */
/**
 * The overview (`/dashboard`): requests, tokens, cost, error rate, p95 latency and time to first
 * token over the last 24 hours (by hour), 7 or 30 days (by day), as cards, charts and tables, and
 * the range's top keys and models. Sums come from `GET /admin/usage` (the hourly rollups), error
 * rate and percentiles from `GET /admin/usage/stats` (the records); both are scoped by the admin
 * API: the operator sees every tenant or the one picked, a tenant's users their own.
 */
import { Hono } from "hono";
import type { ApiKeyJson, TenantJson } from "../../admin/wire.ts";
import type { StatsJson } from "../../usage/stats.ts";
import { adminCall, adminGet, adminList } from "../bridge.ts";
import { sessionOf, type DashboardContext, type DashboardEnv } from "../env.ts";
import { takeFlash } from "../http.ts";
import type { DashboardSession } from "../session.ts";
import { Page } from "../ui.tsx";
import { overviewSeries, rangeWindow, readOverviewQuery, topGroups, type UsageReportJson } from "./overview-data.ts";
import { EmptyState, OverviewCharts, RangeForm, RangeLine, SummaryCards, TopTable, type KeyLabel } from "./overview-parts.tsx";

const TOP = 10;

/**
 * Names of the top keys. Within one tenant the tenant's key list has them; across tenants (or for a
 * key past the list's pages) each is read by id. A key the API does not show keeps its id.
 */
async function keyLabels(c: DashboardContext, session: DashboardSession, ids: string[], tenantId: string, tenantNames: Map<string, string> | null): Promise<Map<string, KeyLabel>> {
  const wanted = new Set(ids);
  const found = new Map<string, ApiKeyJson>();
  if (session.actor.kind === "tenant" || tenantId !== "") {
    const path = tenantId === "" ? "/admin/keys" : `/admin/keys?tenant_id=${encodeURIComponent(tenantId)}`;
    const { items: keys } = await adminList<ApiKeyJson>(c, session, path, (items) => [...wanted].every((id) => items.some((k) => k.id === id)));
    for (const k of keys) if (wanted.has(k.id)) found.set(k.id, k);
  }
  const missing = ids.filter((id) => !found.has(id));
  const answers = await Promise.all(missing.map((id) => adminCall<ApiKeyJson>(c, session, "GET", `/admin/keys/${encodeURIComponent(id)}`)));
  for (const a of answers) if (a.ok) found.set(a.data.id, a.data);
  const labels = new Map<string, KeyLabel>();
  for (const id of ids) {
    const k = found.get(id);
    if (!k) {
      labels.set(id, { name: id, detail: "" });
      continue;
    }
    const parts = [`${k.prefix}…`];
    if (k.status !== "active") parts.push(k.status);
    if (tenantNames && tenantId === "") parts.push(`tenant ${tenantNames.get(k.tenant_id) ?? k.tenant_id}`);
    labels.set(id, { name: k.name, detail: `(${parts.join(", ")})` });
  }
  return labels;
}

/** The overview page. */
export const overviewPage = new Hono<DashboardEnv>().get("/", async (c) => {
  const session = sessionOf(c);
  const operator = session.actor.kind === "operator";
  const q = readOverviewQuery(c.req.query());
  const w = rangeWindow(q.range);
  // The admin API scopes every read: a tenant's session asking for another tenant gets its 404.
  const scope = `start=${w.start.toISOString()}&end=${w.end.toISOString()}${q.tenantId === "" ? "" : `&tenant_id=${encodeURIComponent(q.tenantId)}`}`;
  const stats = await adminGet<StatsJson>(c, session, `/admin/usage/stats?${scope}&bucket=${w.bucket}`);
  // Grouped reports by day: the range's sums per key or model need no finer buckets.
  const [report, byKey, byModel, tenants] = await Promise.all([
    adminGet<UsageReportJson>(c, session, `/admin/usage?${scope}&bucket=${w.bucket}`),
    adminGet<UsageReportJson>(c, session, `/admin/usage?${scope}&bucket=day&group_by=key`),
    adminGet<UsageReportJson>(c, session, `/admin/usage?${scope}&bucket=day&group_by=model`),
    operator ? adminList<TenantJson>(c, session, "/admin/tenants").then((l) => l.items) : Promise.resolve(null),
  ]);
  // A picked tenant past the list's pages stays in the select.
  const choices = tenants?.map((t) => ({ id: t.id, name: t.name })) ?? null;
  if (choices && q.tenantId !== "" && !choices.some((t) => t.id === q.tenantId)) choices.push({ id: q.tenantId, name: q.tenantId });
  const tenantNames = choices ? new Map(choices.map((t) => [t.id, t.name])) : null;
  const empty = report.totals.requests === 0 && stats.totals.requests === 0;
  const topKeys = topGroups(byKey.data, "api_key_id", q.rank, TOP);
  const topModels = topGroups(byModel.data, "model", q.rank, TOP);
  const labels = empty ? new Map<string, KeyLabel>() : await keyLabels(c, session, topKeys.map((k) => k.id), q.tenantId, tenantNames);
  const per = w.bucket;
  return c.html(
    <Page title="Overview" session={session} current="" flash={takeFlash(c)}>
      <h1>Overview</h1>
      <RangeForm q={q} tenants={choices} />
      <RangeLine q={q} start={stats.start} end={stats.end} tenant={q.tenantId === "" ? null : (tenantNames?.get(q.tenantId) ?? null)} />
      {empty ? (
        <EmptyState q={q} operator={operator} viewer={session.role === "viewer"} />
      ) : (
        <>
          <section aria-labelledby="totals">
            <h2 id="totals">Totals</h2>
            <SummaryCards totals={report.totals} stats={stats.totals} />
          </section>
          <section aria-labelledby="trends">
            <h2 id="trends">{`Per ${per}`}</h2>
            <OverviewCharts s={overviewSeries(report, stats)} per={per} />
          </section>
          <section aria-labelledby="top">
            <h2 id="top">Top keys and models</h2>
            <TopTable id="top-keys" caption={`Top ${TOP} API keys by ${q.rank}`} what="API key" rows={topKeys} label={(id) => labels.get(id) ?? { name: id, detail: "" }} />
            <TopTable id="top-models" caption={`Top ${TOP} models by ${q.rank}`} what="Model" rows={topModels} label={(id) => ({ name: id, detail: "" })} />
          </section>
        </>
      )}
    </Page>,
  );
});
