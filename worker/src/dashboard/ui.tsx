/** @jsxImportSource hono/jsx */
/**
 * The dashboard's page shell and shared pieces: navigation, flash messages, times (UTC in the HTML,
 * the viewer's zone once the script runs, UTC on hover), charts with their table twins, forms that
 * carry the CSRF token, and usage meters. Server-rendered with Hono's JSX (text is escaped).
 */
import { raw } from "hono/html";
import type { FC, PropsWithChildren } from "hono/jsx";
import { DASHBOARD_ASSET_VERSION } from "./assets.generated.ts";
import type { DashboardSession } from "./session.ts";

/** Where the dashboard lives. */
export const BASE = "/dashboard";

/** A message shown once at the top of the next page. */
export interface Flash {
  kind: "ok" | "error";
  text: string;
}

/** The pages in the navigation; `operator` ones are hidden from tenant users. */
const NAV: { path: string; label: string; operator?: boolean; admin?: boolean }[] = [
  { path: "", label: "Overview" },
  { path: "/tenants", label: "Tenants & keys" },
  { path: "/usage", label: "Usage & billing" },
  { path: "/fleet", label: "Fleet", operator: true },
  { path: "/audit", label: "Audit log" },
  { path: "/sso", label: "Single sign-on" },
];

function who(session: DashboardSession): string {
  const p = session.actor.principal;
  if (p === "admin-token") return "Operator";
  return `${p.replace(/^user:/, "").replace(/^key:/, "key ")} (${session.role})`;
}

/** The whole page: header, navigation, flash, main content. */
export const Page: FC<PropsWithChildren<{ title: string; session: DashboardSession | null; current?: string; flash?: Flash | null }>> = (props) => {
  const s = props.session;
  return (
    <>
      {raw("<!doctype html>")}
      <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>{`${props.title} · Switchyard`}</title>
        <link rel="stylesheet" href={`${BASE}/assets/app.${DASHBOARD_ASSET_VERSION}.css`} />
        <script src={`${BASE}/assets/app.${DASHBOARD_ASSET_VERSION}.js`} defer></script>
      </head>
      <body>
        <a class="skip" href="#main">
          Skip to content
        </a>
        <header class="top">
          <a class="brand" href={BASE}>
            Switchyard
          </a>
          {s && (
            <nav aria-label="Main">
              <ul>
                {NAV.filter((n) => !n.operator || s.actor.kind === "operator").map((n) => (
                  <li>
                    <a href={`${BASE}${n.path}`} aria-current={props.current === n.path ? "page" : undefined}>
                      {n.label}
                    </a>
                  </li>
                ))}
              </ul>
            </nav>
          )}
          {s && (
            <div class="who">
              <span>{who(s)}</span>
              <form method="post" action={`${BASE}/logout`} class="inline">
                <Csrf session={s} />
                <button type="submit">Sign out</button>
              </form>
            </div>
          )}
        </header>
        <main id="main" tabindex={-1}>
          <div id="live-status" role="status" aria-live="polite" class="skip"></div>
          {props.flash && (
            <p class={`flash ${props.flash.kind}`} role={props.flash.kind === "error" ? "alert" : "status"}>
              {props.flash.text}
            </p>
          )}
          {props.children}
        </main>
      </body>
      </html>
    </>
  );
};

/** The hidden CSRF field every form of a signed-in page carries. */
export const Csrf: FC<{ session: DashboardSession }> = ({ session }) => <input type="hidden" name="_csrf" value={session.csrf} />;

/** A one-button form posting to `action` (with optional hidden fields and a confirmation). */
export const Action: FC<{ session: DashboardSession; action: string; label: string; confirm?: string; danger?: boolean; fields?: Record<string, string> }> = (p) => (
  <form method="post" action={p.action} class="inline" data-confirm={p.confirm}>
    <Csrf session={p.session} />
    {Object.entries(p.fields ?? {}).map(([name, value]) => (
      <input type="hidden" name={name} value={value} />
    ))}
    <button type="submit" class={p.danger ? "danger" : "secondary"}>
      {p.label}
    </button>
  </form>
);

/** A UTC instant: shown in UTC by the server, in the viewer's zone by the script, UTC on hover. */
export const Time: FC<{ at: string | Date | null | undefined }> = ({ at }) => {
  if (at === null || at === undefined) return <span class="muted">never</span>;
  const d = typeof at === "string" ? new Date(at) : at;
  if (Number.isNaN(d.getTime())) return <span>{String(at)}</span>;
  const utc = d.toISOString().replace("T", " ").replace(/:\d\d\.\d+Z$/, " UTC");
  return (
    <time datetime={d.toISOString()} title={`UTC: ${utc}`}>
      {utc}
    </time>
  );
};

/** One line of a chart. */
export interface ChartSeries {
  label: string;
  values: (number | null)[];
}

/**
 * A time chart (uPlot, drawn by the script) and the same data as a table: the table is what shows
 * without the script and what a screen reader reads; a button switches between the two.
 */
export const Chart: FC<{ id: string; title: string; unit: string; buckets: string[]; series: ChartSeries[]; format?: (v: number) => string }> = (p) => {
  const fmt = p.format ?? ((v: number) => v.toLocaleString("en-US"));
  const data = JSON.stringify({ x: p.buckets.map((b) => Math.floor(new Date(b).getTime() / 1000)), series: p.series, unit: p.unit });
  return (
    <figure class="chart" data-chart={data} id={p.id} aria-labelledby={`${p.id}-title`}>
      <figcaption>
        <span id={`${p.id}-title`}>{p.title}</span>
        <button type="button" class="chart-toggle secondary" aria-controls={`${p.id}-table`} hidden>
          Show table
        </button>
      </figcaption>
      <div class="chart-area" hidden></div>
      <div class="chart-table" id={`${p.id}-table`}>
        <table>
          <thead>
            <tr>
              <th scope="col">Period</th>
              {p.series.map((s) => (
                <th scope="col" class="num">
                  {`${s.label} (${p.unit})`}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {p.buckets.length === 0 && (
              <tr>
                <td colspan={p.series.length + 1} class="muted">
                  No data in this range.
                </td>
              </tr>
            )}
            {p.buckets.map((b, i) => (
              <tr>
                <th scope="row">
                  <Time at={b} />
                </th>
                {p.series.map((s) => {
                  const v = s.values[i];
                  return <td class="num">{v === null || v === undefined ? "–" : fmt(v)}</td>;
                })}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </figure>
  );
};

/** How close a counter is to its cap, as a bar and a percentage. */
export const Meter: FC<{ used: number; cap: number | null }> = ({ used, cap }) => {
  if (cap === null || cap <= 0) return <span class="muted">no cap</span>;
  const share = Math.min(1, used / cap);
  const pct = Math.round(share * 100);
  return (
    <span>
      <span class={share >= 0.9 ? "meter hot" : "meter"} role="img" aria-label={`${pct}% of the cap used`}>
        <span style={`width:${pct}%`}></span>
      </span>{" "}
      {`${pct}%`}
    </span>
  );
};

/** A number with thousands separators. */
export function num(v: number | null | undefined): string {
  return v === null || v === undefined ? "–" : v.toLocaleString("en-US");
}

/** Micro-dollars as dollars. */
export function usd(micros: number | null | undefined): string {
  return micros === null || micros === undefined ? "–" : `$${(micros / 1_000_000).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 4 })}`;
}
