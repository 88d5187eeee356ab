/**
 * What the admin routes that act on one node through its backplane share (adapters-admin.ts,
 * host-admin.ts): the operator check and the node's registry entry, the node's refusals relayed as
 * the gateway's errors, and the audit row of a change made there.
 */
import { eq } from "drizzle-orm";
import { nodes } from "../../../schema/tables/index.ts";
import { actorName } from "../admin/auth.ts";
import { inTransaction, notFound, reading, requireOperator, type AdminContext } from "../admin/http.ts";
import { recordAudit } from "../admin/store.ts";
import { ApiError, type ErrorCode } from "../errors.ts";
import type { NodeEntry } from "../routing/snapshot.ts";
import { managementError, type ManagementAnswer } from "./management.ts";

const NODE_ID = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const WHAT = "manage GPU nodes";

/** The registry entry of node `:id`, as forwarding needs it (403 for a tenant key, 404 when unknown). */
export async function nodeOf(c: AdminContext): Promise<NodeEntry> {
  requireOperator(c.get("actor"), WHAT);
  const id = c.req.param("id") ?? "";
  if (!NODE_ID.test(id)) throw notFound("node", id);
  const [row] = await reading(c, (db) => db.select().from(nodes).where(eq(nodes.id, id)));
  if (!row) throw notFound("node", id);
  return { id: row.id, regionId: row.regionId, url: row.url, models: row.models, status: row.status, secretVersion: row.secretVersion, heartbeats: row.lastHeartbeatAt !== null };
}

/** Relays a node's refusal as the gateway's error, with the node's message. */
export function refused(node: NodeEntry, answer: ManagementAnswer): ApiError {
  const code: ErrorCode = answer.status === 404 ? "not_found" : answer.status === 409 ? "conflict" : answer.status === 400 ? "invalid_value" : "upstream_error";
  return new ApiError(code, `Node ${node.id}: ${managementError(answer)}`);
}

/** Writes the audit row of a change made on a node (target: the node). */
export async function auditNode(c: AdminContext, action: string, node: NodeEntry, details: Record<string, unknown>): Promise<void> {
  await inTransaction(c, (db) => recordAudit(db, actorName(c.get("actor")), action, "node", node.id, null, details));
}
