/**
 * `/admin/conversations` (docs/audit.md): audited conversations, newest first, one by request id,
 * or exported as JSON lines. A tenant admin key sees its own tenant's only; another tenant's
 * conversation answers 404 like one that does not exist.
 */
import { and, desc, eq, gte, lt, sql, type SQL } from "drizzle-orm";
import { Hono } from "hono";
import { z } from "zod";
import { conversations } from "../../../schema/tables/index.ts";
import type { AdminEnv } from "../admin/auth.ts";
import { canSee, notFound, readQuery, reading, type AdminContext } from "../admin/http.ts";
import { decodeCursor, page, pageQuery } from "../admin/pagination.ts";

const id = z.string().min(1).max(200);
const instant = z.string().datetime({ offset: true }).transform((s) => new Date(s));
const filters = {
  tenant_id: id.optional(),
  environment_id: id.optional(),
  key_id: id.optional(),
  model: id.optional(),
  /** Inclusive. */
  start: instant.optional(),
  /** Exclusive. */
  end: instant.optional(),
};
const listQuery = z.object({ ...pageQuery, ...filters });
const exportQuery = z.object(filters);

/** Rows per query of an export. */
const EXPORT_PAGE = 200;

type ConversationRow = typeof conversations.$inferSelect;

/** A conversation as the admin API shows it. */
export interface ConversationJson {
  object: "conversation";
  id: string;
  request_id: string;
  tenant_id: string;
  environment_id: string;
  key_id: string;
  mode: "metadata" | "full";
  endpoint: string;
  model: string;
  node_id: string | null;
  status: string;
  http_status: number;
  streamed: boolean;
  prompt_tokens: number;
  completion_tokens: number;
  started_at: string;
  ended_at: string;
  /** The request body (full mode), redacted; null in metadata mode. */
  request_body: string | null;
  request_truncated: boolean;
  /** The response body (full mode), redacted: JSON as sent, or a stream's SSE data payloads one per line. */
  response_body: string | null;
  response_truncated: boolean;
}

/** Presents a conversation row. */
export function conversationJson(row: ConversationRow): ConversationJson {
  return {
    object: "conversation",
    id: row.id,
    request_id: row.id,
    tenant_id: row.tenantId,
    environment_id: row.environmentId,
    key_id: row.apiKeyId,
    mode: row.mode,
    endpoint: row.endpoint,
    model: row.model,
    node_id: row.nodeId,
    status: row.status,
    http_status: row.httpStatus,
    streamed: row.streamed,
    prompt_tokens: row.promptTokens,
    completion_tokens: row.completionTokens,
    started_at: row.at.toISOString(),
    ended_at: row.endedAt.toISOString(),
    request_body: row.requestBody,
    request_truncated: row.requestTruncated,
    response_body: row.responseBody,
    response_truncated: row.responseTruncated,
  };
}

/** The filters' conditions; a tenant admin key is held to its own tenant (404 for another one named). */
function conditions(c: AdminContext, q: z.infer<typeof exportQuery>): (SQL | undefined)[] {
  const actor = c.get("actor");
  if (q.tenant_id !== undefined && !canSee(actor, q.tenant_id)) throw notFound("tenant", q.tenant_id);
  const tenant = q.tenant_id ?? (actor.kind === "tenant" ? actor.tenantId : undefined);
  return [
    tenant ? eq(conversations.tenantId, tenant) : undefined,
    q.environment_id ? eq(conversations.environmentId, q.environment_id) : undefined,
    q.key_id ? eq(conversations.apiKeyId, q.key_id) : undefined,
    q.model ? eq(conversations.model, q.model) : undefined,
    q.start ? gte(conversations.at, q.start) : undefined,
    q.end ? lt(conversations.at, q.end) : undefined,
  ];
}

/** One page, newest first, after a cursor (Postgres' own text of the timestamp: a JS Date would drop microseconds). */
function pageAfter(c: AdminContext, where: (SQL | undefined)[], after: { at: string; id: string } | null, limit: number) {
  return reading(c, (db) =>
    db
      .select({ row: conversations, atText: sql<string>`${conversations.at}::text` })
      .from(conversations)
      .where(and(...where, after ? sql`(${conversations.at}, ${conversations.id}) < (${after.at}::timestamptz, ${after.id})` : undefined))
      .orderBy(desc(conversations.at), desc(conversations.id))
      .limit(limit + 1),
  );
}

/** The conversation routes, mounted at `/admin/conversations`. */
export const conversationRoutes = new Hono<AdminEnv>()
  .get("/", async (c) => {
    const q = readQuery(c, listQuery);
    const rows = await pageAfter(c, conditions(c, q), decodeCursor(q.cursor, ["at", "id"]), q.limit);
    return c.json(page(rows, q.limit, (r) => conversationJson(r.row), (r) => ({ at: r.atText, id: r.row.id })));
  })
  .get("/export", (c) => {
    const where = conditions(c, readQuery(c, exportQuery));
    const encoder = new TextEncoder();
    let after: { at: string; id: string } | null = null;
    // One page per pull: an export of any size is streamed, never held whole.
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const rows = await pageAfter(c, where, after, EXPORT_PAGE);
        const shown = rows.slice(0, EXPORT_PAGE);
        if (shown.length > 0) controller.enqueue(encoder.encode(shown.map((r) => `${JSON.stringify(conversationJson(r.row))}\n`).join("")));
        const last = shown.at(-1);
        if (rows.length <= EXPORT_PAGE || last === undefined) controller.close();
        else after = { at: last.atText, id: last.row.id };
      },
    });
    return new Response(body, { headers: { "content-type": "application/x-ndjson; charset=utf-8", "content-disposition": 'attachment; filename="conversations.jsonl"' } });
  })
  .get("/:request_id", async (c) => {
    const requestId = c.req.param("request_id");
    const [row] = await reading(c, (db) => db.select().from(conversations).where(eq(conversations.id, requestId)));
    if (!row || !canSee(c.get("actor"), row.tenantId)) throw notFound("conversation", requestId);
    return c.json(conversationJson(row));
  });

