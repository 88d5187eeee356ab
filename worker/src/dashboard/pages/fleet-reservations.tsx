/** @jsxImportSource hono/jsx */
/** The reservations section of the fleet page: the list, the delete buttons and the create form. */
import type { FC } from "hono/jsx";
import type { NodeJson, ReservationJson } from "../../nodes/admin-wire.ts";
import type { DashboardSession } from "../session.ts";
import { Action, Csrf, Time, num } from "../ui.tsx";
import { FLEET } from "./fleet-parts.tsx";

/** What the create form suggests: known tenants and catalogue models. */
export interface ReservationChoices {
  tenants: { id: string; name: string }[];
  models: string[];
  nodes: NodeJson[];
}

const ReservationTable: FC<{ session: DashboardSession; reservations: ReservationJson[] }> = ({ session, reservations }) => (
  <table>
    <caption>Capacity reservations</caption>
    <thead>
      <tr>
        <th scope="col">Reservation</th>
        <th scope="col">Tenant</th>
        <th scope="col">Model</th>
        <th scope="col" class="num">
          Tokens per second
        </th>
        <th scope="col">Nodes</th>
        <th scope="col">Created</th>
        {session.role !== "viewer" && <th scope="col">Actions</th>}
      </tr>
    </thead>
    <tbody>
      {reservations.length === 0 && (
        <tr>
          <td colspan={session.role === "viewer" ? 6 : 7} class="muted">
            No reservations: every tenant shares the fleet.
          </td>
        </tr>
      )}
      {reservations.map((r) => (
        <tr>
          <th scope="row" class="mono">
            {r.id}
          </th>
          <td class="mono">{r.tenant_id}</td>
          <td class="mono">{r.model}</td>
          <td class="num">{num(r.tokens_per_second)}</td>
          <td class="mono">{r.node_ids.length === 0 ? <span class="muted">none left</span> : r.node_ids.join(", ")}</td>
          <td>
            <Time at={r.created_at} />
          </td>
          {session.role !== "viewer" && (
            <td>
              <Action
                session={session}
                action={`${FLEET}/reservations/${encodeURIComponent(r.id)}/delete`}
                label={`Delete reservation ${r.id}`}
                danger
                confirm={`Delete reservation ${r.id} (${num(r.tokens_per_second)} tokens/s of ${r.model} for ${r.tenant_id})? Its traffic then shares the fleet with everyone else.`}
              />
            </td>
          )}
        </tr>
      ))}
    </tbody>
  </table>
);

const CreateForm: FC<{ session: DashboardSession; choices: ReservationChoices }> = ({ session, choices }) => (
  <form method="post" action={`${FLEET}/reservations`} class="stack" aria-labelledby="reservation-new">
    <h3 id="reservation-new">Reserve capacity</h3>
    <Csrf session={session} />
    <label>
      Tenant id
      <input type="text" name="tenant_id" required maxlength={200} list="reservation-tenants" autocomplete="off" />
    </label>
    <datalist id="reservation-tenants">
      {choices.tenants.map((t) => (
        <option value={t.id}>{t.name}</option>
      ))}
    </datalist>
    <label>
      Model
      <input type="text" name="model" required maxlength={200} list="reservation-models" autocomplete="off" />
    </label>
    <datalist id="reservation-models">
      {choices.models.map((m) => (
        <option value={m}></option>
      ))}
    </datalist>
    <label>
      Tokens per second
      <input type="number" name="tokens_per_second" required min={1} max={100000000} step={1} inputmode="numeric" />
    </label>
    <fieldset>
      <legend>Nodes that serve it first</legend>
      {choices.nodes.length === 0 && <p class="muted">No nodes are registered yet.</p>}
      {choices.nodes.map((n) => (
        <label style="display:flex;gap:.4rem;align-items:center">
          <input type="checkbox" name="node_ids" value={n.id} />
          <span>
            <span class="mono">{n.id}</span> <span class="muted">{`(${n.region_id}, ${n.status})`}</span>
          </span>
        </label>
      ))}
    </fieldset>
    <div>
      <button type="submit">Create reservation</button>
    </div>
  </form>
);

/** The whole reservations section. */
export const ReservationsSection: FC<{ session: DashboardSession; reservations: ReservationJson[]; more: boolean; choices: ReservationChoices }> = (p) => (
  <section aria-labelledby="reservations" id="reservations-section">
    <h2 id="reservations">Reservations</h2>
    <p class="muted">A reservation serves a tenant's tokens per second on a model from the nodes it names first; when capacity is short, other traffic is shed before it.</p>
    <ReservationTable session={p.session} reservations={p.reservations} />
    {p.more && <p class="muted">Showing the first {num(p.reservations.length)} reservations.</p>}
    {p.session.role !== "viewer" && <CreateForm session={p.session} choices={p.choices} />}
  </section>
);
