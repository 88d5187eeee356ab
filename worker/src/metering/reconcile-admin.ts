/**
 * `/admin/reconciliation` (operator only): the per-node comparisons of engine-counted and metered
 * tokens written by the hourly job (metering/reconcile.ts), newest first, and `POST /run` to
 * reconcile now. docs/reconciliation.md explains the numbers.
 */
import { and, desc, eq, gte, sql, type SQL } from "drizzle-orm";
import { Hono } from "hono";
import { z } from "zod";
import { reconciliations } from "../../../schema/tables/index.ts";
import { driftThresholds, flushAndReconcile, type NodeOutcome } from "./reconcile.ts";
import { actorName, type AdminEnv } from "../admin/auth.ts";
import { readJson, readQuery, reading, requireOperator } from "../admin/http.ts";
import { decodeCursor, page, pageQuery } from "../admin/pagination.ts";
import { recordAudit } from "../admin/store.ts";
import { reconciliationJson, type ReconcileNodeJson, type ReconcileRunJson } from "../admin/wire.ts";

function nodeJson(o: NodeOutcome): ReconcileNodeJson {
  switch (o.outcome) {
    case "reconciled":
      return { node_id: o.nodeId, outcome: o.outcome, reconciliation_id: o.row.id };
    case "baseline":
      return { node_id: o.nodeId, outcome: o.outcome, sampled_at: o.sampledAt.toISOString() };
    case "usage_pending":
      return { node_id: o.nodeId, outcome: o.outcome, events: o.events };
    default:
      return { node_id: o.nodeId, outcome: o.outcome };
  }
}

const nodeId = z.string().min(1).max(200);
// A date (UTC midnight) or a date-time with `Z` or an offset.
const instant = z.union([z.iso.datetime({ offset: true }), z.iso.date()]).transform((s) => new Date(s));
const listQuery = z.object({
  ...pageQuery,
  node_id: nodeId.optional(),
  alert: z.enum(["true", "false"]).optional(),
  /** Only windows that ended at or after this instant. */
  since: instant.optional(),
});
const runBody = z.strictObject({ node_id: nodeId.optional() });

/** The reconciliation routes, mounted at `/admin/reconciliation`. */
export const reconciliationRoutes = new Hono<AdminEnv>()
  .get("/", async (c) => {
    requireOperator(c.get("actor"), "read reconciliations");
    const q = readQuery(c, listQuery);
    // The cursor keeps Postgres' own text of the timestamp, like the audit log's.
    const after = decodeCursor(q.cursor, ["end", "id"]);
    const where: (SQL | undefined)[] = [
      q.node_id === undefined ? undefined : eq(reconciliations.nodeId, q.node_id),
      q.alert === undefined ? undefined : eq(reconciliations.alert, q.alert === "true"),
      q.since === undefined ? undefined : gte(reconciliations.windowEnd, q.since),
      after ? sql`(${reconciliations.windowEnd}, ${reconciliations.id}) < (${after.end}::timestamptz, ${after.id})` : undefined,
    ];
    const rows = await reading(c, (db) =>
      db
        .select({ row: reconciliations, endText: sql<string>`${reconciliations.windowEnd}::text` })
        .from(reconciliations)
        .where(and(...where))
        .orderBy(desc(reconciliations.windowEnd), desc(reconciliations.id))
        .limit(q.limit + 1),
    );
    return c.json(page(rows, q.limit, (r) => reconciliationJson(r.row), (r) => ({ end: r.endText, id: r.row.id })));
  })
  .post("/run", async (c) => {
    requireOperator(c.get("actor"), "run a reconciliation");
    const body = await readJson(c, runBody);
    const { redis, settings, log } = c.get("deps");
    const result = await c.get("deps").db(async (db) => {
      const run = await flushAndReconcile({ db, redis, prefix: settings.redisPrefix, thresholds: driftThresholds(settings), log }, body.node_id === undefined ? null : [body.node_id]);
      const written = run.outcomes.flatMap((o) => (o.outcome === "reconciled" ? [o.row.id] : []));
      await recordAudit(db, actorName(c.get("actor")), "reconciliation.run", "reconciliation", body.node_id ?? "all", null, { node_id: body.node_id ?? null, written });
      return run;
    });
    const answer: ReconcileRunJson = {
      object: "reconciliation.run",
      flushed: result.flushed,
      data: result.outcomes.flatMap((o) => (o.outcome === "reconciled" ? [reconciliationJson(o.row)] : [])),
      nodes: result.outcomes.map(nodeJson),
    };
    return c.json(answer);
  });
