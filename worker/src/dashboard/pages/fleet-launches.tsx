/** @jsxImportSource hono/jsx */
/** Nodes launched through SkyPilot that have not registered yet (docs/provisioning.md), on the fleet page. */
import type { FC } from "hono/jsx";
import type { LaunchJson } from "../../provisioning/launches.ts";
import { Time } from "../ui.tsx";

/** The launches on their way (pending, launching, registering): their node has no heartbeat yet. */
export const LaunchesSection: FC<{ launches: LaunchJson[] }> = ({ launches }) => (
  <section aria-labelledby="launches">
    <h2 id="launches">Launches on their way</h2>
    {launches.length === 0 ? (
      <p class="muted">No node is being launched. Launch nodes with `npm run admin -- node launch` or let the autoscaler do it (docs/provisioning.md).</p>
    ) : (
      <table>
        <caption>Nodes launched through SkyPilot that have not registered yet</caption>
        <thead>
          <tr>
            <th scope="col">Node</th>
            <th scope="col">State</th>
            <th scope="col">Model</th>
            <th scope="col">Where</th>
            <th scope="col">Why</th>
            <th scope="col">Requested</th>
          </tr>
        </thead>
        <tbody>
          {launches.map((l) => (
            <tr>
              <th scope="row" class="mono">
                {l.node_id}
              </th>
              <td>{l.state}</td>
              <td class="mono">{l.model}</td>
              <td>{`${l.provider} ${l.region}, ${l.gpu}${l.spot ? " spot" : ""}`}</td>
              <td>{`${l.reason} (${l.requested_by})`}</td>
              <td>
                <Time at={l.created_at} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    )}
  </section>
);
