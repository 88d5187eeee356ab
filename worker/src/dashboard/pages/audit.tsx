/** @jsxImportSource hono/jsx */
/**
 * The audit log (`/dashboard/audit`): every change, newest first, searchable by free text, action
 * (exact or a `prefix.`), actor, target and, for the operator, tenant. A GET form over
 * `GET /admin/audit`, which scopes a tenant session to its own tenant's entries.
 */
import { Hono } from "hono";
import type { FC } from "hono/jsx";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { AuditJson } from "../../admin/wire.ts";
import type { ListBody } from "../../admin/pagination.ts";
import { adminCall } from "../bridge.ts";
import { sessionOf, type DashboardEnv } from "../env.ts";
import { takeFlash } from "../http.ts";
import type { DashboardSession } from "../session.ts";
import { BASE, Page, Time } from "../ui.tsx";

const PAGE = "/audit";
const PAGE_SIZE = 50;

/** The search fields the page understands (the admin API's names). */
const FIELDS = ["q", "action", "actor", "target_id", "tenant_id"] as const;
type Field = (typeof FIELDS)[number];
type Search = Partial<Record<Field, string>>;

/** The search as the viewer sent it: trimmed, empty fields dropped, `tenant_id` only for the operator. */
function searchOf(query: Record<string, string>, session: DashboardSession): Search {
  const out: Search = {};
  for (const f of FIELDS) {
    const v = (query[f] ?? "").trim();
    if (v !== "" && (f !== "tenant_id" || session.actor.kind === "operator")) out[f] = v;
  }
  return out;
}

/** The page's own URL for a search (and cursor). */
function pageUrl(search: Search, cursor?: string): string {
  const params = new URLSearchParams(Object.entries(search));
  if (cursor) params.set("cursor", cursor);
  const qs = params.toString();
  return `${BASE}${PAGE}${qs ? `?${qs}` : ""}`;
}

/** A link that narrows the search to one value (e.g. every entry of this actor). */
const Narrow: FC<{ search: Search; field: Field; value: string; label: string }> = (p) => (
  <a href={pageUrl({ ...p.search, [p.field]: p.value })} title={p.label}>
    {p.value}
  </a>
);

const Details: FC<{ entry: AuditJson }> = ({ entry }) => {
  const keys = Object.keys(entry.details);
  if (keys.length === 0) return <span class="muted">none</span>;
  return (
    <details>
      <summary>
        {keys.slice(0, 4).join(", ")}
        {keys.length > 4 ? ", …" : ""}
        <span class="skip">{` (details of ${entry.action} on ${entry.target_id})`}</span>
      </summary>
      <pre class="mono" style="white-space:pre-wrap;word-break:break-all;max-width:36rem;margin:.3rem 0">
        {JSON.stringify(entry.details)}
      </pre>
    </details>
  );
};

const SearchForm: FC<{ search: Search; operator: boolean }> = ({ search, operator }) => (
  <form method="get" action={`${BASE}${PAGE}`} class="row" role="search" aria-label="Search the audit log">
    <label>
      Text
      <input type="search" name="q" value={search.q ?? ""} maxlength={200} placeholder="anything: name, id, value" />
    </label>
    <label>
      Action
      <input type="text" name="action" value={search.action ?? ""} maxlength={100} placeholder="api_key.create or api_key." />
    </label>
    <label>
      Actor
      <input type="text" name="actor" value={search.actor ?? ""} maxlength={200} placeholder="admin-token, key:…, user:…" />
    </label>
    <label>
      Target id
      <input type="text" name="target_id" value={search.target_id ?? ""} maxlength={200} />
    </label>
    {operator && (
      <label>
        Tenant id
        <input type="text" name="tenant_id" value={search.tenant_id ?? ""} maxlength={200} />
      </label>
    )}
    <button type="submit">Search</button>
    <a class="button secondary" href={`${BASE}${PAGE}`}>
      Clear search
    </a>
  </form>
);

const Entries: FC<{ entries: AuditJson[]; search: Search; operator: boolean }> = ({ entries, search, operator }) => (
  <table>
    <caption>{Object.keys(search).length > 0 ? "Matching entries, newest first" : "Entries, newest first"}</caption>
    <thead>
      <tr>
        <th scope="col">Time</th>
        <th scope="col">Actor</th>
        <th scope="col">Action</th>
        <th scope="col">Target</th>
        {operator && <th scope="col">Tenant</th>}
        <th scope="col">Outcome</th>
        <th scope="col">Details</th>
      </tr>
    </thead>
    <tbody>
      {entries.length === 0 && (
        <tr>
          <td colspan={operator ? 7 : 6} class="muted">
            {Object.keys(search).length > 0 ? "No entries match this search." : "No entries yet."}
          </td>
        </tr>
      )}
      {entries.map((e) => (
        <tr>
          <td>
            <Time at={e.at} />
          </td>
          <td class="mono">
            <Narrow search={search} field="actor" value={e.actor} label="Only this actor's entries" />
          </td>
          <td class="mono">
            <Narrow search={search} field="action" value={e.action} label="Only this action" />
          </td>
          <td>
            <span class="muted">{e.target_type}</span>{" "}
            <span class="mono">
              <Narrow search={search} field="target_id" value={e.target_id} label="Only entries about this target" />
            </span>
          </td>
          {operator && <td class="mono">{e.tenant_id === null ? <span class="muted">none</span> : <Narrow search={search} field="tenant_id" value={e.tenant_id} label="Only this tenant's entries" />}</td>}
          <td>{e.success ? <span class="badge ok">succeeded</span> : <span class="badge bad">failed</span>}</td>
          <td>
            <Details entry={e} />
          </td>
        </tr>
      ))}
    </tbody>
  </table>
);

/** The audit page. */
export const auditPage = new Hono<DashboardEnv>().get("/", async (c) => {
  const session = sessionOf(c);
  const operator = session.actor.kind === "operator";
  const query = c.req.query();
  const search = searchOf(query, session);
  const cursor = (query.cursor ?? "").trim() || undefined;
  const params = new URLSearchParams({ ...search, limit: String(PAGE_SIZE) });
  if (cursor) params.set("cursor", cursor);
  const answer = await adminCall<ListBody<AuditJson>>(c, session, "GET", `/admin/audit?${params.toString()}`);
  const flash = takeFlash(c) ?? (answer.ok ? null : { kind: "error" as const, text: answer.error.message });
  const entries = answer.ok ? answer.data.data : [];
  const next = answer.ok ? answer.data.next_cursor : null;
  return c.html(
    <Page title="Audit log" session={session} current={PAGE} flash={flash}>
      <h1>Audit log</h1>
      <p class="muted">
        {operator
          ? "Every change made through the admin API or this dashboard, across all tenants, newest first."
          : "Every change made to your organisation through the admin API or this dashboard, newest first."}{" "}
        An action ending in a dot (<code>api_key.</code>) finds every action that starts with it; the text search looks in actions, actors, targets and
        details, ignoring case.
      </p>
      <SearchForm search={search} operator={operator} />
      <Entries entries={entries} search={search} operator={operator} />
      {(cursor !== undefined || next !== null) && (
        <nav aria-label="Audit log pages">
          {cursor && (
            <a class="button secondary" href={pageUrl(search)}>
              Newest entries
            </a>
          )}{" "}
          {next && (
            <a class="button secondary" href={pageUrl(search, next)} rel="next">
              Older entries
            </a>
          )}
        </nav>
      )}
    </Page>,
    // An API refusal (a mangled cursor, an overlong search) keeps its status; the form stays usable.
    answer.ok ? 200 : (answer.status as ContentfulStatusCode),
  );
});
