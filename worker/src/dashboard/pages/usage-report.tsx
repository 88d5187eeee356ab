/** @jsxImportSource hono/jsx */
/**
 * The usage page's range form and report: a chart of tokens per bucket (the largest groups, the
 * rest as "Other") and the table of every group with totals, from `GET /admin/usage`.
 */
import type { FC } from "hono/jsx";
import type { ApiKeyJson, EnvironmentJson, TenantJson } from "../../admin/wire.ts";
import type { ReportRow, ReportTotals } from "../../usage/report.ts";
import { BASE, Chart, num, usd, type ChartSeries } from "../ui.tsx";
import { bucketStarts, rangeQuery, type GroupKey, type RangeForm } from "./usage-data.ts";

/** The answer of `GET /admin/usage` (JSON). */
export interface UsageReport {
  object: "usage.report";
  tenant_id: string | null;
  start: string;
  end: string;
  bucket: "hour" | "day";
  group_by: GroupKey[];
  data: ReportRow[];
  totals: ReportTotals;
}

/** A name to show beside an id. */
export interface Named {
  name: string;
  detail?: string;
}

const SERIES = 5; // the largest groups drawn; the rest are one "Other" line (6 at most)

const GROUP_LABEL: Record<GroupKey, string> = { model: "Model", environment: "Environment", key: "API key", tenant: "Tenant" };

function groupOf(row: ReportRow, group: GroupKey): string {
  const field = { model: row.model, environment: row.environment_id, key: row.api_key_id, tenant: row.tenant_id }[group];
  return field ?? "";
}

/** Names of the report's groups from the lists the page read (environments, keys, tenants). */
export function namesFor(group: GroupKey, lists: { tenants: TenantJson[]; environments: EnvironmentJson[]; keys: ApiKeyJson[] }): Map<string, Named> {
  const out = new Map<string, Named>();
  if (group === "tenant") for (const t of lists.tenants) out.set(t.id, { name: t.name });
  if (group === "environment") for (const e of lists.environments) out.set(e.id, { name: e.name });
  if (group === "key") for (const k of lists.keys) out.set(k.id, { name: k.name, detail: `${k.prefix}…${k.status === "active" ? "" : `, ${k.status}`}` });
  return out;
}

interface GroupSums {
  id: string;
  requests: number;
  prompt: number;
  completion: number;
  tokens: number;
  cost: number;
  credit: number;
  billable: number;
}

function sumByGroup(rows: ReportRow[], group: GroupKey): GroupSums[] {
  const sums = new Map<string, GroupSums>();
  for (const r of rows) {
    const id = groupOf(r, group);
    const s = sums.get(id) ?? { id, requests: 0, prompt: 0, completion: 0, tokens: 0, cost: 0, credit: 0, billable: 0 };
    s.requests += r.requests;
    s.prompt += r.prompt_tokens;
    s.completion += r.completion_tokens;
    s.tokens += r.total_tokens;
    s.cost += r.cost_micros;
    s.credit += r.credit_micros;
    s.billable += r.billable_micros;
    sums.set(id, s);
  }
  return [...sums.values()].sort((a, b) => b.tokens - a.tokens || b.cost - a.cost || a.id.localeCompare(b.id));
}

/** Tokens per bucket: one series per largest group, the others summed as "Other". */
function chartOf(report: UsageReport, group: GroupKey, groups: GroupSums[], names: Map<string, Named>): { buckets: string[]; series: ChartSeries[] } {
  // No usage: the chart's table says so rather than listing empty buckets.
  if (groups.length === 0) return { buckets: [], series: [] };
  const buckets = bucketStarts(report.start, report.end, report.bucket) ?? [...new Set(report.data.map((r) => r.period_start))];
  const index = new Map(buckets.map((b, i) => [b, i]));
  const top = groups.slice(0, SERIES);
  const labels = top.map((g) => names.get(g.id)?.name ?? g.id);
  // Two environments may share a name across tenants: then the id tells them apart.
  const series: ChartSeries[] = top.map((g, i) => {
    const label = labels[i] ?? g.id;
    return { label: labels.filter((l) => l === label).length > 1 ? `${label} (${g.id})` : label, values: buckets.map(() => 0) };
  });
  const other: ChartSeries = { label: "Other", values: buckets.map(() => 0) };
  for (const r of report.data) {
    const i = index.get(r.period_start);
    if (i === undefined) continue;
    const at = top.findIndex((g) => g.id === groupOf(r, group));
    const line = at >= 0 ? series[at] : other;
    if (line) line.values[i] = (line.values[i] ?? 0) + r.total_tokens;
  }
  return { buckets, series: groups.length > SERIES ? [...series, other] : series };
}

/** The range form (a GET form: the range is in the address, so it can be bookmarked). */
export const RangeFormView: FC<{ range: RangeForm; operator: boolean; tenants: TenantJson[] }> = ({ range, operator, tenants }) => (
  <form method="get" action={`${BASE}/usage`} class="row" aria-label="Usage range">
    {operator && (
      <label>
        Tenant
        <select name="tenant_id">
          <option value="" selected={range.tenantId === ""}>
            All tenants
          </option>
          {tenants.map((t) => (
            <option value={t.id} selected={range.tenantId === t.id}>{`${t.name} (${t.id})`}</option>
          ))}
        </select>
      </label>
    )}
    <label>
      From (UTC day)
      <input type="date" name="start" value={range.start} required />
    </label>
    <label>
      To (UTC day, included)
      <input type="date" name="end" value={range.end} required />
    </label>
    <label>
      Group by
      <select name="group_by">
        {(["model", "environment", "key", ...(operator ? (["tenant"] as const) : [])] as GroupKey[]).map((g) => (
          <option value={g} selected={range.groupBy === g}>
            {GROUP_LABEL[g]}
          </option>
        ))}
      </select>
    </label>
    <label>
      Buckets
      <select name="bucket">
        <option value="day" selected={range.bucket === "day"}>
          Days
        </option>
        <option value="hour" selected={range.bucket === "hour"}>
          Hours
        </option>
      </select>
    </label>
    <button type="submit">Show usage</button>
  </form>
);

const GroupName: FC<{ id: string; names: Map<string, Named>; group: GroupKey }> = ({ id, names, group }) => {
  if (group === "model") return <span>{id}</span>;
  const named = names.get(id);
  return (
    <span>
      {named ? `${named.name} ` : ""}
      <code>{id}</code>
      {named?.detail ? <span class="muted">{` (${named.detail})`}</span> : ""}
    </span>
  );
};

/** The report: total cards, the chart, the table by group with totals, and the CSV download. */
export const ReportView: FC<{ report: UsageReport; range: RangeForm; names: Map<string, Named> }> = ({ report, range, names }) => {
  const group = range.groupBy;
  const groups = sumByGroup(report.data, group);
  const chart = chartOf(report, group, groups, names);
  const t = report.totals;
  return (
    <>
      <p>
        {`From ${report.start.slice(0, 16).replace("T", " ")} UTC to ${report.end.slice(0, 16).replace("T", " ")} UTC (end excluded), ${report.tenant_id === null ? "all tenants" : `tenant ${report.tenant_id}`}. `}
        <a class="button secondary" href={`${BASE}/usage/export.csv?${rangeQuery(range)}`} download>
          Download CSV
        </a>
      </p>
      <div class="cards">
        <div class="card">
          <div class="label">Requests</div>
          <div class="value">{num(t.requests)}</div>
        </div>
        <div class="card">
          <div class="label">Tokens</div>
          <div class="value">{num(t.total_tokens)}</div>
        </div>
        <div class="card">
          <div class="label">Cost</div>
          <div class="value">{usd(t.cost_micros)}</div>
        </div>
        <div class="card">
          <div class="label">Paid from credits</div>
          <div class="value">{usd(t.credit_micros)}</div>
        </div>
        <div class="card">
          <div class="label">Billable</div>
          <div class="value">{usd(t.billable_micros)}</div>
        </div>
      </div>
      <Chart id="usage-tokens" title={`Tokens per ${report.bucket} by ${GROUP_LABEL[group].toLowerCase()}`} unit="tokens" buckets={chart.buckets} series={chart.series} />
      <table id="usage-groups">
        <caption>{`Usage by ${GROUP_LABEL[group].toLowerCase()}`}</caption>
        <thead>
          <tr>
            <th scope="col">{GROUP_LABEL[group]}</th>
            <th scope="col" class="num">Requests</th>
            <th scope="col" class="num">Prompt tokens</th>
            <th scope="col" class="num">Completion tokens</th>
            <th scope="col" class="num">Total tokens</th>
            <th scope="col" class="num">Cost</th>
            <th scope="col" class="num">Credits</th>
            <th scope="col" class="num">Billable</th>
          </tr>
        </thead>
        <tbody>
          {groups.length === 0 && (
            <tr>
              <td colspan={8} class="muted">
                No usage in this range.
              </td>
            </tr>
          )}
          {groups.map((g) => (
            <tr data-group={g.id}>
              <th scope="row">
                <GroupName id={g.id} names={names} group={group} />
              </th>
              <td class="num">{num(g.requests)}</td>
              <td class="num">{num(g.prompt)}</td>
              <td class="num">{num(g.completion)}</td>
              <td class="num">{num(g.tokens)}</td>
              <td class="num">{usd(g.cost)}</td>
              <td class="num">{usd(g.credit)}</td>
              <td class="num">{usd(g.billable)}</td>
            </tr>
          ))}
        </tbody>
        <tfoot>
          <tr data-group="total">
            <th scope="row">Total</th>
            <td class="num">{num(t.requests)}</td>
            <td class="num">{num(t.prompt_tokens)}</td>
            <td class="num">{num(t.completion_tokens)}</td>
            <td class="num">{num(t.total_tokens)}</td>
            <td class="num">{usd(t.cost_micros)}</td>
            <td class="num">{usd(t.credit_micros)}</td>
            <td class="num">{usd(t.billable_micros)}</td>
          </tr>
        </tfoot>
      </table>
    </>
  );
};
