/**
 * `/admin/nodes` (operator only): the GPU nodes with their live health and load, their health
 * history, drain / undrain, and removal.
 *
 * Reaching the gateway: the admin status travels in the routing snapshot, so every change drops
 * its Redis entry and this isolate's caches; other isolates follow within
 * ROUTING_CACHE_ISOLATE_SECONDS. Draining only stops new requests: those in flight finish on the
 * node. Removing deletes the registry row and the node's live and circuit state, but a backplane
 * that is still running registers itself again with its next heartbeat: stop it first.
 */
import { desc, eq, sql } from "drizzle-orm";
import { Hono } from "hono";
import { capacityReservations, healthChecks, nodeLaunches, nodes } from "../../../schema/tables/index.ts";
import { liveNodesKey } from "./live.ts";
import { circuitKey } from "../routing/breaker.ts";
import { actorName, type AdminEnv } from "../admin/auth.ts";
import { dropRoutingSnapshot, readFleetLive } from "./admin-state.ts";
import { healthCheckJson, nodeJson, type NodeDetailJson } from "./admin-wire.ts";
import { launchJson } from "../provisioning/launches.ts";
import { inTransaction, notFound, reading, requireOperator, type AdminContext } from "../admin/http.ts";
import { recordAudit, type AdminDb } from "../admin/store.ts";

/** Health checks shown with one node. */
const HISTORY = 50;
const NODE_ID = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const WHAT = "manage GPU nodes";

type NodeRow = typeof nodes.$inferSelect;
type LaunchRow = typeof nodeLaunches.$inferSelect;

/** The SkyPilot launch of a node, or null (docs/provisioning.md). */
async function launchOf(db: AdminDb, id: string): Promise<LaunchRow | null> {
  const [launch] = await db.select().from(nodeLaunches).where(eq(nodeLaunches.nodeId, id));
  return launch ?? null;
}

function nodeId(c: AdminContext): string {
  requireOperator(c.get("actor"), WHAT);
  const id = c.req.param("id") ?? "";
  if (!NODE_ID.test(id)) throw notFound("node", id);
  return id;
}

async function loadNode(db: AdminDb, id: string, lock: boolean): Promise<NodeRow> {
  const query = db.select().from(nodes).where(eq(nodes.id, id));
  const [row] = lock ? await query.for("update") : await query;
  if (!row) throw notFound("node", id);
  return row;
}

/** Sets the admin status (audited when it changes), drops the routing snapshot, and answers with the node. */
async function setStatus(c: AdminContext, status: "active" | "draining"): Promise<Response> {
  const id = nodeId(c);
  const { row, changed } = await inTransaction(c, async (db) => {
    const before = await loadNode(db, id, true);
    if (before.status === status) return { row: before, changed: false };
    const [after] = await db.update(nodes).set({ status }).where(eq(nodes.id, id)).returning();
    if (!after) throw notFound("node", id);
    await recordAudit(db, actorName(c.get("actor")), status === "draining" ? "node.drain" : "node.undrain", "node", id, null, {
      before: { status: before.status },
      after: { status: after.status },
    });
    return { row: after, changed: true };
  });
  if (changed) await dropRoutingSnapshot(c);
  const launch = await reading(c, (db) => launchOf(db, id));
  return c.json(nodeJson(row, await readFleetLive(c), Date.now(), launch));
}

/** The node routes, mounted at `/admin/nodes`. */
export const nodeRoutes = new Hono<AdminEnv>()
  .get("/", async (c) => {
    requireOperator(c.get("actor"), WHAT);
    const [{ rows, launches }, fleet] = await Promise.all([
      reading(c, async (db) => ({
        rows: await db.select().from(nodes).orderBy(nodes.id),
        launches: await db.select().from(nodeLaunches),
      })),
      readFleetLive(c),
    ]);
    const now = Date.now();
    const byNode = new Map(launches.map((l) => [l.nodeId, l]));
    const registered = new Set(rows.map((r) => r.id));
    // Launches whose node has not registered yet (no heartbeat, so no registry row), oldest first.
    const unregistered = launches
      .filter((l) => !registered.has(l.nodeId) && l.state !== "terminated" && l.state !== "failed")
      .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime())
      .map(launchJson);
    return c.json({ object: "list", data: rows.map((r) => nodeJson(r, fleet, now, byNode.get(r.id) ?? null)), next_cursor: null, launches: unregistered });
  })
  .get("/:id", async (c) => {
    const id = nodeId(c);
    const [{ row, history, launch }, fleet] = await Promise.all([
      reading(c, async (db) => ({
        row: await loadNode(db, id, false),
        history: await db.select().from(healthChecks).where(eq(healthChecks.nodeId, id)).orderBy(desc(healthChecks.at)).limit(HISTORY),
        launch: await launchOf(db, id),
      })),
      readFleetLive(c),
    ]);
    const body: NodeDetailJson = { ...nodeJson(row, fleet, Date.now(), launch), health_checks: history.map(healthCheckJson) };
    return c.json(body);
  })
  .post("/:id/drain", (c) => setStatus(c, "draining"))
  .post("/:id/undrain", (c) => setStatus(c, "active"))
  .delete("/:id", async (c) => {
    const id = nodeId(c);
    const fleet = await readFleetLive(c);
    await inTransaction(c, async (db) => {
      const before = await loadNode(db, id, true);
      await db.delete(nodes).where(eq(nodes.id, id));
      // Reservations keep their other nodes; the history (health_checks, spot_events) stays for the record.
      const reservations = await db
        .update(capacityReservations)
        .set({ nodeIds: sql`array_remove(${capacityReservations.nodeIds}, ${id})` })
        .where(sql`${id} = any(${capacityReservations.nodeIds})`)
        .returning({ id: capacityReservations.id });
      await recordAudit(db, actorName(c.get("actor")), "node.remove", "node", id, null, {
        before: nodeJson(before, fleet, Date.now()),
        reservations_updated: reservations.map((r) => r.id),
      });
    });
    const prefix = c.get("deps").settings.redisPrefix;
    try {
      await c.get("deps").redis.pipeline().hdel(liveNodesKey(prefix), id).hdel(circuitKey(prefix), id).exec();
    } catch (err) {
      // The registry row is gone, so routing no longer sees the node; a leftover live entry is inert.
      c.get("deps").log("admin_node_state_cleanup_failed", { requestId: c.get("deps").requestId, nodeId: id, error: String(err) });
    }
    await dropRoutingSnapshot(c);
    return c.json({
      object: "node",
      id,
      deleted: true,
      note: "A backplane still running with this node id registers it again with its next heartbeat: stop it first.",
    });
  });
