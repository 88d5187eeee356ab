/** @jsxImportSource hono/jsx */
/**
 * Pieces of the fleet pages: state badges (always text, never colour alone), the load meter, the
 * node table of a region, and the drain / undrain buttons.
 */
import type { FC } from "hono/jsx";
import type { NodeJson, RegionJson } from "../../nodes/admin-wire.ts";
import type { DashboardSession } from "../session.ts";
import { Action, BASE, Time, num } from "../ui.tsx";

/** Where the fleet pages live. */
export const FLEET = `${BASE}/fleet`;

/** The node's detail page. */
export function nodePath(id: string): string {
  return `${FLEET}/nodes/${encodeURIComponent(id)}`;
}

type Tone = "ok" | "warn" | "bad" | "muted";

/** A state as text in a badge; the tone only repeats what the text says. */
export const Badge: FC<{ tone: Tone; text: string }> = ({ tone, text }) => <span class={tone === "muted" ? "badge" : `badge ${tone}`}>{text}</span>;

/** The admin status: whether the operator lets the node take new requests. */
export const StatusBadge: FC<{ status: NodeJson["status"] }> = ({ status }) => (
  <Badge tone={status === "active" ? "ok" : status === "draining" ? "warn" : "bad"} text={status} />
);

/** What the node itself says (or `stale` when it stopped saying anything; `static` without heartbeats). */
export function healthOf(n: NodeJson): { tone: Tone; text: string } {
  if (n.last_heartbeat_at === null && n.heartbeat_age_ms === null) return { tone: "muted", text: "static" };
  if (n.stale) return { tone: "bad", text: "stale" };
  switch (n.reported_status) {
    case "ready":
      return { tone: "ok", text: "ready" };
    case "degraded":
    case "draining":
      return { tone: "warn", text: n.reported_status };
    case "unhealthy":
      return { tone: "bad", text: "unhealthy" };
    default:
      return { tone: "muted", text: "unknown" };
  }
}

/** The node's health, and whether routing sends it new requests. */
export const HealthCell: FC<{ node: NodeJson }> = ({ node }) => {
  const h = healthOf(node);
  return (
    <>
      <Badge tone={h.tone} text={h.text} />
      <br />
      <span class="muted">{node.healthy ? "takes new requests" : "no new requests"}</span>
    </>
  );
};

/** The circuit breaker's phase, with when an open circuit tries again. */
export const CircuitCell: FC<{ node: NodeJson }> = ({ node }) => (
  <>
    <Badge tone={node.circuit === "closed" ? "ok" : node.circuit === "open" ? "bad" : "warn"} text={node.circuit === "half_open" ? "half-open" : node.circuit} />
    {node.circuit_failures > 0 && <span class="muted">{` ${num(node.circuit_failures)} failures`}</span>}
    {node.circuit === "open" && node.circuit_open_until !== null && (
      <>
        <br />
        <span class="muted">
          retries <Time at={node.circuit_open_until} />
        </span>
      </>
    )}
  </>
);

/** KV cache use (0..1) as a bar and a percentage; a dash when the engines do not report it. */
export const KvMeter: FC<{ usage: number | null }> = ({ usage }) => {
  if (usage === null) return <span class="muted">–</span>;
  const pct = Math.round(Math.min(1, Math.max(0, usage)) * 100);
  return (
    <span>
      <span class={pct >= 90 ? "meter hot" : "meter"} role="img" aria-label={`KV cache ${pct}% used`}>
        <span style={`width:${pct}%`}></span>
      </span>{" "}
      {`${pct}%`}
    </span>
  );
};

/** When the gateway last heard from the node: the live heartbeat's age, else the registry's copy. */
export function lastHeard(n: NodeJson, now: number): string | null {
  if (n.heartbeat_age_ms !== null) return new Date(now - n.heartbeat_age_ms).toISOString();
  return n.last_heartbeat_at;
}

/** Drain (with a confirmation) or undrain, returning to `back`. */
export const DrainButton: FC<{ session: DashboardSession; node: NodeJson; back: string }> = ({ session, node, back }) => {
  if (session.role === "viewer") return null;
  if (node.status === "active") {
    return (
      <Action
        session={session}
        action={`${nodePath(node.id)}/drain`}
        label={`Drain ${node.id}`}
        danger
        confirm={`Drain ${node.id}? It takes no new requests; requests in flight finish.`}
        fields={{ back }}
      />
    );
  }
  return <Action session={session} action={`${nodePath(node.id)}/undrain`} label={`Undrain ${node.id}`} fields={{ back }} />;
};

/** One region: its summary line and the table of its nodes. */
export const RegionSection: FC<{ session: DashboardSession; region: RegionJson | null; regionId: string; nodes: NodeJson[]; now: number }> = (p) => {
  const r = p.region;
  const headingId = `region-${p.regionId}`;
  return (
    <section aria-labelledby={headingId}>
      <h3 id={headingId}>{r ? `${r.name} (${r.id})` : `${p.regionId} (not in the region list)`}</h3>
      {r && (
        <p class="muted">
          {`${num(r.nodes_healthy)} of ${num(r.nodes_total)} nodes take new requests · `}
          {r.latitude === null || r.longitude === null ? "no coordinates (nearest-region routing skips it)" : `at ${r.latitude}, ${r.longitude}`}
          {` · price ×${r.price_multiplier}`}
          {r.active ? "" : " · inactive"}
        </p>
      )}
      {p.nodes.length === 0 ? (
        <p class="muted">No nodes in this region.</p>
      ) : (
        <table>
          <caption>{`Nodes in ${r?.name ?? p.regionId}`}</caption>
          <thead>
            <tr>
              <th scope="col">Node</th>
              <th scope="col">Status</th>
              <th scope="col">Health</th>
              <th scope="col" class="num">
                Queue
              </th>
              <th scope="col" class="num">
                Running
              </th>
              <th scope="col" class="num">
                In flight / capacity
              </th>
              <th scope="col">KV cache</th>
              <th scope="col">Circuit</th>
              <th scope="col">Last heartbeat</th>
              <th scope="col">Models</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {p.nodes.map((n) => (
              <tr>
                <th scope="row">
                  <a href={nodePath(n.id)}>{n.id}</a>
                </th>
                <td>
                  <StatusBadge status={n.status} />
                  {n.launch && <div class="muted">{`SkyPilot: ${n.launch.state} (${n.launch.gpu}${n.launch.spot ? ", spot" : ""})`}</div>}
                </td>
                <td>
                  <HealthCell node={n} />
                </td>
                <td class="num">{num(n.waiting)}</td>
                <td class="num">{num(n.running)}</td>
                <td class="num">{n.in_flight === null ? "–" : `${num(n.in_flight)} / ${num(n.capacity)}`}</td>
                <td>
                  <KvMeter usage={n.kv_cache_usage} />
                </td>
                <td>
                  <CircuitCell node={n} />
                </td>
                <td>
                  <Time at={lastHeard(n, p.now)} />
                </td>
                <td class="mono">{n.models.length === 0 ? <span class="muted">none</span> : n.models.join(", ")}</td>
                <td>
                  <DrainButton session={p.session} node={n} back={FLEET} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
};
