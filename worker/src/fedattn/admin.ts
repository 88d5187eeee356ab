/**
 * `/admin/fedattn/sessions` (operator only; docs/fedattn.md#records): the recorded sessions, newest
 * first, and one session with its contributions, read from Postgres (what the scheduled job has
 * written: up to a minute behind the live `GET /v1/fedattn/sessions/active`). Sessions belong to the
 * fleet, not to a tenant, so tenant admin keys get 403.
 */
import { and, asc, desc, eq, sql, type SQL } from "drizzle-orm";
import { Hono } from "hono";
import { z } from "zod";
import { fedattnContributions, fedattnSessions } from "../../../schema/tables/index.ts";
import type { AdminEnv } from "../admin/auth.ts";
import { notFound, readQuery, reading } from "../admin/http.ts";
import { decodeCursor, encodeCursor, pageQuery, type ListBody } from "../admin/pagination.ts";
import { ApiError } from "../errors.ts";

type SessionRow = typeof fedattnSessions.$inferSelect;
type ContributionRow = typeof fedattnContributions.$inferSelect;

/** A recorded session as the admin API shows it. */
export interface RecordedSessionJson {
  object: "fedattn.session";
  id: string;
  status: SessionRow["status"];
  initiator: string;
  participants: string[];
  departed: string[];
  sync_interval: number;
  privacy_mode: boolean;
  started_at: string;
  ended_at: string | null;
  total_syncs: number;
  average_sync_latency_ms: number | null;
  updated_at: string;
}

function sessionJson(r: SessionRow): RecordedSessionJson {
  return {
    object: "fedattn.session",
    id: r.id,
    status: r.status,
    initiator: r.initiator,
    participants: r.participants,
    departed: r.departed,
    sync_interval: r.syncInterval,
    privacy_mode: r.privacyMode,
    started_at: r.startedAt.toISOString(),
    ended_at: r.endedAt?.toISOString() ?? null,
    total_syncs: r.totalSyncs,
    average_sync_latency_ms: r.averageSyncLatencyMs,
    updated_at: r.updatedAt.toISOString(),
  };
}

function contributionJson(r: ContributionRow) {
  return { id: r.id, participant: r.participant, block_start: r.blockStart, block_end: r.blockEnd, size_bytes: r.sizeBytes, dtype: r.dtype, latency_ms: r.latencyMs, weight: r.weight, at: r.at.toISOString() };
}

const listQuery = z.object({ ...pageQuery, status: z.enum(["active", "ended", "expired"]).optional(), node: z.string().min(1).optional() });

/** Contributions shown with one session (the newest ones beyond are counted, not listed). */
const MAX_CONTRIBUTIONS = 1_000;

export const fedattnAdminRoutes = new Hono<AdminEnv>()
  .use(async (c, next) => {
    if (c.get("actor").kind !== "operator") throw new ApiError("permission_denied", "Federated-attention sessions belong to the fleet: they are for the operator (ADMIN_TOKEN).");
    await next();
  })
  .get("/sessions", async (c) => {
    const q = readQuery(c, listQuery);
    const after = decodeCursor(q.cursor, ["at", "id"]);
    const where: (SQL | undefined)[] = [
      q.status ? eq(fedattnSessions.status, q.status) : undefined,
      q.node ? sql`${q.node} = any(${fedattnSessions.participants})` : undefined,
      after ? sql`(${fedattnSessions.startedAt}, ${fedattnSessions.id}) < (${after.at}::timestamptz, ${after.id})` : undefined,
    ];
    const rows = await reading(c, (db) =>
      db
        .select({ row: fedattnSessions, atText: sql<string>`${fedattnSessions.startedAt}::text` })
        .from(fedattnSessions)
        .where(and(...where))
        .orderBy(desc(fedattnSessions.startedAt), desc(fedattnSessions.id))
        .limit(q.limit + 1),
    );
    const shown = rows.slice(0, q.limit);
    const last = shown.at(-1);
    const body: ListBody<RecordedSessionJson> = {
      object: "list",
      data: shown.map((r) => sessionJson(r.row)),
      next_cursor: rows.length > q.limit && last ? encodeCursor({ at: last.atText, id: last.row.id }) : null,
    };
    return c.json(body);
  })
  .get("/sessions/:id", async (c) => {
    const id = c.req.param("id");
    const found = await reading(c, async (db) => {
      const [session] = await db.select().from(fedattnSessions).where(eq(fedattnSessions.id, id));
      if (!session) return null;
      const contributions = await db.select().from(fedattnContributions).where(eq(fedattnContributions.sessionId, id)).orderBy(asc(fedattnContributions.at), asc(fedattnContributions.id)).limit(MAX_CONTRIBUTIONS + 1);
      return { session, contributions };
    });
    if (!found) throw notFound("recorded federated-attention session", id);
    return c.json({
      ...sessionJson(found.session),
      contributions: found.contributions.slice(0, MAX_CONTRIBUTIONS).map(contributionJson),
      contributions_truncated: found.contributions.length > MAX_CONTRIBUTIONS,
    });
  });
