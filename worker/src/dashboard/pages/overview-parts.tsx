/** @jsxImportSource hono/jsx */
/** The overview's pieces: the range form, the summary cards, the charts and the top keys and models. */
import type { FC } from "hono/jsx";
import type { TenantJson } from "../../admin/wire.ts";
import type { ReportTotals } from "../../usage/report.ts";
import type { StatsValues } from "../../usage/stats.ts";
import { BASE, Chart, num, Time, usd } from "../ui.tsx";
import { millis, percent, RANGES, RANKS, type OverviewQuery, type OverviewSeries, type RangeKey, type RankKey, type TopRow } from "./overview-data.ts";

/** A key's name and what else tells it apart (prefix, status, tenant for the operator). */
export interface KeyLabel {
  name: string;
  detail: string;
}

/** The range form: a GET form, so a range can be bookmarked and works without the script. */
export const RangeForm: FC<{ q: OverviewQuery; tenants: Pick<TenantJson, "id" | "name">[] | null }> = ({ q, tenants }) => (
  <form method="get" action={BASE} class="row" aria-label="Overview range">
    <label>
      Range
      <select name="range">
        {(Object.keys(RANGES) as RangeKey[]).map((k) => (
          <option value={k} selected={q.range === k}>
            {RANGES[k].label}
          </option>
        ))}
      </select>
    </label>
    {tenants && (
      <label>
        Tenant
        <select name="tenant_id">
          <option value="" selected={q.tenantId === ""}>
            All tenants
          </option>
          {tenants.map((t) => (
            <option value={t.id} selected={q.tenantId === t.id}>{`${t.name} (${t.id})`}</option>
          ))}
        </select>
      </label>
    )}
    <label>
      Rank top keys and models by
      <select name="rank">
        {(Object.keys(RANKS) as RankKey[]).map((k) => (
          <option value={k} selected={q.rank === k}>
            {RANKS[k]}
          </option>
        ))}
      </select>
    </label>
    <button type="submit">Show</button>
  </form>
);

const Card: FC<{ label: string; value: string; detail?: string }> = (p) => (
  <div class="card">
    <dt class="label">{p.label}</dt>
    <dd class="value" style="margin:0">
      {p.value}
    </dd>
    {p.detail !== undefined && (
      <dd class="muted" style="margin:0">
        {p.detail}
      </dd>
    )}
  </div>
);

/** The range's totals: requests, tokens, cost, error rate, p95 latency and TTFT. */
export const SummaryCards: FC<{ totals: ReportTotals; stats: StatsValues }> = ({ totals, stats }) => (
  <dl class="cards" id="summary">
    <Card label="Requests" value={num(totals.requests)} />
    <Card label="Tokens" value={num(totals.total_tokens)} detail={`${num(totals.prompt_tokens)} prompt, ${num(totals.completion_tokens)} completion`} />
    <Card label="Cost" value={usd(totals.cost_micros)} />
    <Card label="Error rate" value={percent(stats.error_rate)} detail={`${num(stats.errors)} of ${num(stats.requests)} requests failed`} />
    <Card label="p95 latency" value={millis(stats.p95_latency_ms)} detail="completed requests" />
    <Card label="p95 time to first token" value={millis(stats.p95_ttft_ms)} detail="completed streams" />
  </dl>
);

const decimals = (digits: number) => (v: number) => v.toLocaleString("en-US", { maximumFractionDigits: digits });

/** The charts (each with its table), one point per bucket of the range. */
export const OverviewCharts: FC<{ s: OverviewSeries; per: string }> = ({ s, per }) => (
  <>
    <Chart id="requests-chart" title={`Requests per ${per}`} unit="count" buckets={s.buckets} series={[{ label: "Requests", values: s.requests }]} />
    <Chart
      id="tokens-chart"
      title={`Tokens per ${per}`}
      unit="tokens"
      buckets={s.buckets}
      series={[
        { label: "Prompt", values: s.prompt },
        { label: "Completion", values: s.completion },
      ]}
    />
    <Chart id="cost-chart" title={`Cost per ${per}`} unit="USD" buckets={s.buckets} series={[{ label: "Cost", values: s.costUsd }]} format={(v) => usd(Math.round(v * 1e6))} />
    <Chart id="errors-chart" title={`Error rate per ${per} (no requests: –)`} unit="%" buckets={s.buckets} series={[{ label: "Error rate", values: s.errorPct }]} format={decimals(2)} />
    <Chart
      id="latency-chart"
      title={`p95 latency and time to first token per ${per} (none: –)`}
      unit="ms"
      buckets={s.buckets}
      series={[
        { label: "p95 latency", values: s.p95Latency },
        { label: "p95 time to first token", values: s.p95Ttft },
      ]}
    />
  </>
);

/** The top keys or models of the range. */
export const TopTable: FC<{ id: string; caption: string; what: string; rows: TopRow[]; label: (id: string) => { name: string; detail: string } }> = (p) => (
  <table id={p.id}>
    <caption>{p.caption}</caption>
    <thead>
      <tr>
        <th scope="col">{p.what}</th>
        <th scope="col" class="num">
          Requests
        </th>
        <th scope="col" class="num">
          Prompt tokens
        </th>
        <th scope="col" class="num">
          Completion tokens
        </th>
        <th scope="col" class="num">
          Total tokens
        </th>
        <th scope="col" class="num">
          Cost
        </th>
      </tr>
    </thead>
    <tbody>
      {p.rows.map((r) => {
        const l = p.label(r.id);
        return (
          <tr>
            <th scope="row">
              {l.name}
              {l.detail !== "" && <span class="muted"> {l.detail}</span>}
            </th>
            <td class="num">{num(r.requests)}</td>
            <td class="num">{num(r.prompt)}</td>
            <td class="num">{num(r.completion)}</td>
            <td class="num">{num(r.tokens)}</td>
            <td class="num">{usd(r.costMicros)}</td>
          </tr>
        );
      })}
    </tbody>
  </table>
);

/** The range in words, with its UTC bounds. */
export const RangeLine: FC<{ q: OverviewQuery; start: string; end: string; tenant: string | null }> = ({ q, start, end, tenant }) => (
  <p class="muted">
    {`${RANGES[q.range].label}${tenant === null ? "" : `, ${tenant}`}: `}
    <Time at={start} /> to <Time at={end} /> (buckets in UTC).
  </p>
);

/** Shown instead of numbers when the range has no usage. */
export const EmptyState: FC<{ q: OverviewQuery; operator: boolean; viewer: boolean }> = ({ q, operator, viewer }) => (
  <section aria-labelledby="empty" id="empty-state">
    <h2 id="empty">No usage yet</h2>
    <p>
      {`No requests were recorded in this range (${RANGES[q.range].label.toLowerCase()}). Requests show here about a minute after they are served, once the usage flush has written them.`}
    </p>
    <p>
      {q.range !== "30d" && (
        <>
          <a href={`${BASE}?range=30d${q.tenantId === "" ? "" : `&tenant_id=${encodeURIComponent(q.tenantId)}`}`}>Look at the last 30 days</a>
          {viewer ? "." : " or "}
        </>
      )}
      {!viewer && (
        <>
          <a href={`${BASE}/tenants`}>{operator ? "create a tenant and an API key" : "create an API key"}</a>
          {" to send a first request."}
        </>
      )}
    </p>
  </section>
);
