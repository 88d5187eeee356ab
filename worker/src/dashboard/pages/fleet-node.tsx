/** @jsxImportSource hono/jsx */
/** One node's page: its live load, engines, details and health history (table and charts). */
import type { FC, PropsWithChildren } from "hono/jsx";
import type { HealthCheckJson, NodeDetailJson } from "../../nodes/admin-wire.ts";
import type { DashboardSession } from "../session.ts";
import { Chart, Time, num, type ChartSeries } from "../ui.tsx";
import { Badge, CircuitCell, DrainButton, FLEET, HealthCell, KvMeter, StatusBadge, lastHeard, nodePath } from "./fleet-parts.tsx";

/** A number a health check recorded with its change (the load at that moment), or null. */
function figure(check: HealthCheckJson, key: string): number | null {
  const v = check.detail[key];
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

function healthTone(status: string): "ok" | "warn" | "bad" | "muted" {
  if (status === "ready") return "ok";
  if (status === "degraded" || status === "draining") return "warn";
  if (status === "unhealthy" || status === "stale") return "bad";
  return "muted";
}

function ms(v: number | null): string {
  return v === null ? "–" : `${num(Math.round(v))} ms`;
}

function pct(v: number | null): string {
  return v === null ? "–" : `${Math.round(v * 100)}%`;
}

const Card: FC<PropsWithChildren<{ label: string }>> = ({ label, children }) => (
  <div class="card">
    <div class="label">{label}</div>
    <div class="value">{children}</div>
  </div>
);

const Engines: FC<{ node: NodeDetailJson }> = ({ node }) => (
  <table>
    <caption>Engines, from the last heartbeat</caption>
    <thead>
      <tr>
        <th scope="col">Engine</th>
        <th scope="col">Kind</th>
        <th scope="col">Health</th>
        <th scope="col">Circuit</th>
        <th scope="col" class="num">
          In flight / max
        </th>
        <th scope="col" class="num">
          Running
        </th>
        <th scope="col" class="num">
          Queue
        </th>
        <th scope="col">KV cache</th>
        <th scope="col" class="num">
          Recent TTFT
        </th>
      </tr>
    </thead>
    <tbody>
      {node.engines.length === 0 && (
        <tr>
          <td colspan={9} class="muted">
            No engine load reported (a static node, or no heartbeat yet).
          </td>
        </tr>
      )}
      {node.engines.map((e) => (
        <tr>
          <th scope="row" class="mono">
            {e.id}
          </th>
          <td>{e.kind}</td>
          <td>
            <Badge tone={e.healthy ? "ok" : "bad"} text={e.healthy ? "healthy" : "unhealthy"} />
          </td>
          <td>
            <Badge tone={e.circuit === "closed" ? "ok" : e.circuit === "open" ? "bad" : "warn"} text={e.circuit.replace("_", "-")} />
          </td>
          <td class="num">{`${num(e.in_flight)} / ${num(e.max_concurrency)}`}</td>
          <td class="num">{num(e.running)}</td>
          <td class="num">{num(e.waiting)}</td>
          <td>
            <KvMeter usage={e.kv_cache_usage} />
          </td>
          <td class="num">{ms(e.recent_ttft_ms)}</td>
        </tr>
      ))}
    </tbody>
  </table>
);

const History: FC<{ checks: HealthCheckJson[] }> = ({ checks }) => (
  <table>
    <caption>Health changes, newest first</caption>
    <thead>
      <tr>
        <th scope="col">Time</th>
        <th scope="col">Status</th>
        <th scope="col">Before</th>
        <th scope="col" class="num">
          Queue
        </th>
        <th scope="col" class="num">
          Running
        </th>
        <th scope="col" class="num">
          In flight / capacity
        </th>
        <th scope="col" class="num">
          KV cache
        </th>
        <th scope="col" class="num">
          Recent TTFT
        </th>
      </tr>
    </thead>
    <tbody>
      {checks.length === 0 && (
        <tr>
          <td colspan={8} class="muted">
            No health changes recorded: the node has not sent a heartbeat, or its status never changed.
          </td>
        </tr>
      )}
      {checks.map((h) => {
        const inFlight = figure(h, "inFlight");
        return (
          <tr>
            <th scope="row">
              <Time at={h.at} />
            </th>
            <td>
              <Badge tone={healthTone(h.status)} text={h.status} />
            </td>
            <td>{h.previous_status ?? <span class="muted">first seen</span>}</td>
            <td class="num">{num(figure(h, "waiting"))}</td>
            <td class="num">{num(figure(h, "running"))}</td>
            <td class="num">{inFlight === null ? "–" : `${num(inFlight)} / ${num(figure(h, "capacity"))}`}</td>
            <td class="num">{pct(figure(h, "kvCacheUsage"))}</td>
            <td class="num">{ms(figure(h, "recentTtftMs"))}</td>
          </tr>
        );
      })}
    </tbody>
  </table>
);

/** The charts of the health history: load, KV cache use and TTFT at each change (oldest first). */
const HistoryCharts: FC<{ checks: HealthCheckJson[] }> = ({ checks }) => {
  const ordered = [...checks].reverse();
  const buckets = ordered.map((h) => h.at);
  const series = (label: string, key: string, scale = 1): ChartSeries => ({
    label,
    values: ordered.map((h) => {
      const v = figure(h, key);
      return v === null ? null : Math.round(v * scale * 100) / 100;
    }),
  });
  const some = (s: ChartSeries[]) => s.some((x) => x.values.some((v) => v !== null));
  const load = [series("Queue", "waiting"), series("Running", "running"), series("In flight", "inFlight")];
  const kv = [series("KV cache", "kvCacheUsage", 100)];
  const ttft = [series("Recent TTFT", "recentTtftMs")];
  if (checks.length < 2) return null;
  return (
    <>
      {some(load) && <Chart id="node-load" title="Requests at each health change" unit="requests" buckets={buckets} series={load} />}
      {some(kv) && <Chart id="node-kv" title="KV cache use at each health change" unit="%" buckets={buckets} series={kv} />}
      {some(ttft) && <Chart id="node-ttft" title="Time to first token at each health change" unit="ms" buckets={buckets} series={ttft} />}
    </>
  );
};

/** The node page's content (inside `Page`). */
export const NodeDetail: FC<{ session: DashboardSession; node: NodeDetailJson; now: number }> = ({ session, node, now }) => (
  <>
    <p class="crumbs">
      <a href={FLEET}>Fleet</a> / <span class="mono">{node.id}</span>
    </p>
    <h1>{`Node ${node.id}`}</h1>
    <div class="cards">
      <Card label="Status">
        <StatusBadge status={node.status} />
      </Card>
      <Card label="Health">
        <HealthCell node={node} />
      </Card>
      <Card label="Queue (waiting)">{num(node.waiting)}</Card>
      <Card label="Running">{num(node.running)}</Card>
      <Card label="In flight / capacity">{node.in_flight === null ? "–" : `${num(node.in_flight)} / ${num(node.capacity)}`}</Card>
      <Card label="KV cache">
        <KvMeter usage={node.kv_cache_usage} />
      </Card>
      <Card label="Recent TTFT">{ms(node.recent_ttft_ms)}</Card>
      <Card label="Circuit">
        <CircuitCell node={node} />
      </Card>
    </div>
    <div>
      <DrainButton session={session} node={node} back={nodePath(node.id)} />
    </div>
    <h2>Details</h2>
    <table>
      <caption>Registry entry and heartbeat</caption>
      <tbody>
        <tr>
          <th scope="row">Region</th>
          <td class="mono">{node.region_id}</td>
        </tr>
        <tr>
          <th scope="row">URL</th>
          <td class="mono">{node.url}</td>
        </tr>
        <tr>
          <th scope="row">Models</th>
          <td class="mono">{node.models.length === 0 ? "none" : node.models.join(", ")}</td>
        </tr>
        <tr>
          <th scope="row">LoRA adapters</th>
          <td class="mono">{node.adapters.length === 0 ? "none" : node.adapters.map((a) => `${a.name} (on ${a.base})`).join(", ")}</td>
        </tr>
        <tr>
          <th scope="row">Last heartbeat</th>
          <td>
            <Time at={lastHeard(node, now)} />
            {node.heartbeat_interval_ms !== null && <span class="muted">{` · every ${num(node.heartbeat_interval_ms / 1000)} s`}</span>}
          </td>
        </tr>
        <tr>
          <th scope="row">TTFT average</th>
          <td>{ms(node.ttft_ewma_ms)}</td>
        </tr>
        <tr>
          <th scope="row">Signing secret version</th>
          <td>{num(node.secret_version)}</td>
        </tr>
        <tr>
          <th scope="row">Registered</th>
          <td>
            <Time at={node.created_at} />
          </td>
        </tr>
      </tbody>
    </table>
    <h2>Engines</h2>
    <Engines node={node} />
    <h2>Health history</h2>
    <p class="muted">One entry each time the status the node reports changes, or it goes stale (three missed heartbeats) or comes back, with its load at that moment; the latest {num(50)}.</p>
    <HistoryCharts checks={node.health_checks} />
    <History checks={node.health_checks} />
  </>
);
