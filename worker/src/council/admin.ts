/**
 * `/admin/councils` and `/admin/council/votes` (docs/council.md). A tenant's councils: listed (the
 * built-in `default` included unless the tenant has its own), read, created or replaced whole
 * (PUT), deleted. A tenant admin key manages its own tenant's; the operator any tenant's. Every
 * change is audited and drops the tenant's cached councils (config.ts) at once.
 */
import { and, asc, eq } from "drizzle-orm";
import { Hono } from "hono";
import { z } from "zod";
import { ApiError } from "../errors.ts";
import { actorName, type AdminEnv } from "../admin/auth.ts";
import { canSee, inTransaction, notFound, readJson, readQuery, reading, type AdminContext } from "../admin/http.ts";
import { dropCaches } from "../admin/invalidate.ts";
import { pageQuery } from "../admin/pagination.ts";
import { newId, recordAudit } from "../admin/store.ts";
import { councils, models } from "../../../schema/tables/index.ts";
import type { AdminDb } from "../admin/store.ts";
import { builtinCouncil, DEFAULT_COUNCIL_NAME } from "./builtin.ts";
import { councilCacheKey, councilFromRow, defaultCouncilModel, forgetCouncils } from "./config.ts";
import type { Council } from "./types.ts";
import { listVotes, readVote } from "./votes.ts";
import type { CouncilJson } from "./wire.ts";

const NAME = /^[a-z0-9][a-z0-9_-]{0,39}$/;
const TAG = /^[A-Z0-9][A-Z0-9 _-]{0,63}$/;

const specialistBody = z.strictObject({
  name: z.string().regex(NAME, "a specialist name is 1-40 lowercase letters, digits, '_' or '-'"),
  persona: z.string().trim().min(1).max(8_000),
  model: z.string().min(1).max(200),
  sampling: z
    .strictObject({
      temperature: z.number().min(0).max(2).optional(),
      top_p: z.number().gt(0).max(1).optional(),
      max_tokens: z.number().int().min(1).max(8_192).optional(),
      seed: z.number().int().optional(),
      min_tokens: z.number().int().min(0).max(8_192).optional(),
    })
    .optional(),
  concern_tags: z.array(z.string().regex(TAG, "a concern tag is 1-64 capitals, digits, spaces, '_' or '-', e.g. SECURITY CONCERN")).max(8).default([]),
});
const putBody = z.strictObject({
  specialists: z.array(specialistBody).min(1).max(16),
  synthesiser: z.string(),
  deadline_ms: z.number().int().min(1_000).max(120_000).optional(),
  critical_tags: z.array(z.string().regex(TAG)).max(16).optional(),
  leave_breadcrumbs: z.boolean().optional(),
});
const votesQuery = z.object({ ...pageQuery, tenant_id: z.string().optional(), council: z.string().optional() });

/** A council as the admin API shows it. */
export function councilJson(tenantId: string, council: Council, updatedAt: Date | null): CouncilJson {
  return {
    object: "council",
    tenant_id: tenantId,
    name: council.name,
    builtin: council.builtin,
    model: `council/${council.name}`,
    specialists: council.specialists,
    synthesiser: council.synthesiser,
    deadline_ms: council.deadlineMs,
    critical_tags: council.criticalTags,
    leave_breadcrumbs: council.leaveBreadcrumbs,
    updated_at: updatedAt ? updatedAt.toISOString() : null,
  };
}

/** The catalogue's active chat models (ids and aliases), to check a council's models against. */
function chatModels(db: AdminDb): Promise<{ id: string; aliases: string[]; baseModel: string | null }[]> {
  return db
    .select({ id: models.id, aliases: models.aliases, baseModel: models.baseModel })
    .from(models)
    .where(and(eq(models.active, true), eq(models.kind, "chat")))
    .orderBy(asc(models.id));
}

/** The tenant in the path, if the actor may see it (404 otherwise, as for an unknown tenant). */
function tenantOf(c: AdminContext): string {
  const tenantId = c.req.param("tenant_id") ?? "";
  if (!canSee(c.get("actor"), tenantId)) throw notFound("tenant", tenantId);
  return tenantId;
}

async function dropTenantCouncils(c: AdminContext, tenantId: string): Promise<void> {
  forgetCouncils(tenantId);
  await dropCaches(c, [councilCacheKey(c.get("deps").settings.redisPrefix, tenantId)]);
}

/** The council routes, mounted at `/admin/councils`. */
export const councilRoutes = new Hono<AdminEnv>()
  .get("/:tenant_id", async (c) => {
    const tenantId = tenantOf(c);
    const { rows, chat } = await reading(c, async (db) => ({
      rows: await db.select().from(councils).where(eq(councils.tenantId, tenantId)).orderBy(asc(councils.name)),
      chat: await chatModels(db),
    }));
    const model = defaultCouncilModel(c.get("deps").settings.council.defaultModel, chat);
    const builtin = model !== null && !rows.some((r) => r.name === DEFAULT_COUNCIL_NAME) ? [councilJson(tenantId, builtinCouncil(model), null)] : [];
    return c.json({ object: "list", data: [...builtin, ...rows.map((r) => councilJson(tenantId, councilFromRow(r), r.updatedAt))], next_cursor: null });
  })
  .get("/:tenant_id/:name", async (c) => {
    const tenantId = tenantOf(c);
    const name = c.req.param("name");
    const { row, chat } = await reading(c, async (db) => ({
      row: (await db.select().from(councils).where(and(eq(councils.tenantId, tenantId), eq(councils.name, name))))[0],
      chat: await chatModels(db),
    }));
    if (row) return c.json(councilJson(tenantId, councilFromRow(row), row.updatedAt));
    const model = defaultCouncilModel(c.get("deps").settings.council.defaultModel, chat);
    if (name === DEFAULT_COUNCIL_NAME && model !== null) return c.json(councilJson(tenantId, builtinCouncil(model), null));
    throw notFound("council", name);
  })
  .put("/:tenant_id/:name", async (c) => {
    const tenantId = tenantOf(c);
    const name = c.req.param("name");
    if (!NAME.test(name)) throw new ApiError("invalid_value", "A council name is 1-40 lowercase letters, digits, '_' or '-'.", { param: "name" });
    const body = await readJson(c, putBody);
    const names = body.specialists.map((s) => s.name);
    const repeated = names.find((n, i) => names.indexOf(n) !== i);
    if (repeated) throw new ApiError("invalid_value", `The specialist '${repeated}' is listed twice.`, { param: "specialists" });
    if (!names.includes(body.synthesiser)) throw new ApiError("invalid_value", `The synthesiser '${body.synthesiser}' must be one of the specialists: ${names.join(", ")}.`, { param: "synthesiser" });
    const { row, created } = await inTransaction(c, async (db) => {
      const chat = await chatModels(db);
      for (const s of body.specialists) {
        const model = chat.find((m) => m.id === s.model || m.aliases.includes(s.model));
        if (!model) throw new ApiError("invalid_value", `The specialist '${s.name}' names '${s.model}', which is not an active chat model of the catalogue.`, { param: "specialists" });
      }
      const [before] = await db.select().from(councils).where(and(eq(councils.tenantId, tenantId), eq(councils.name, name))).for("update");
      const values = {
        specialists: body.specialists.map((s) => ({ name: s.name, persona: s.persona, model: s.model, sampling: s.sampling ?? {}, concern_tags: s.concern_tags })),
        synthesiser: body.synthesiser,
        deadlineMs: body.deadline_ms ?? 30_000,
        criticalTags: body.critical_tags ?? ["SECURITY CONCERN", "7GEN CONCERN"],
        leaveBreadcrumbs: body.leave_breadcrumbs ?? false,
        updatedAt: new Date(),
      };
      const [after] = await db
        .insert(councils)
        .values({ id: newId("cnl"), tenantId, name, ...values })
        .onConflictDoUpdate({ target: [councils.tenantId, councils.name], set: values })
        .returning();
      if (!after) throw new Error("council upsert returned no row");
      await recordAudit(db, actorName(c.get("actor")), before ? "council.update" : "council.create", "council", after.id, tenantId, {
        before: before ? councilJson(tenantId, councilFromRow(before), before.updatedAt) : null,
        after: councilJson(tenantId, councilFromRow(after), after.updatedAt),
      });
      return { row: after, created: !before };
    });
    await dropTenantCouncils(c, tenantId);
    return c.json(councilJson(tenantId, councilFromRow(row), row.updatedAt), created ? 201 : 200);
  })
  .delete("/:tenant_id/:name", async (c) => {
    const tenantId = tenantOf(c);
    const name = c.req.param("name");
    await inTransaction(c, async (db) => {
      const [before] = await db.delete(councils).where(and(eq(councils.tenantId, tenantId), eq(councils.name, name))).returning();
      if (!before) throw notFound("council", name);
      await recordAudit(db, actorName(c.get("actor")), "council.delete", "council", before.id, tenantId, { before: councilJson(tenantId, councilFromRow(before), before.updatedAt) });
    });
    await dropTenantCouncils(c, tenantId);
    return c.json({ object: "council", tenant_id: tenantId, name, deleted: true });
  });

/** Stored votes, mounted at `/admin/council/votes`: every tenant's for the operator (or `tenant_id`'s), a tenant admin key its own. */
export const councilVoteRoutes = new Hono<AdminEnv>()
  .get("/", async (c) => {
    const q = readQuery(c, votesQuery);
    const actor = c.get("actor");
    if (q.tenant_id !== undefined && !canSee(actor, q.tenant_id)) throw notFound("tenant", q.tenant_id);
    const tenantId = q.tenant_id ?? (actor.kind === "tenant" ? actor.tenantId : null);
    return c.json(await reading(c, (db) => listVotes(db, { tenantId, council: q.council, cursor: q.cursor, limit: q.limit })));
  })
  .get("/:id", async (c) => {
    const actor = c.get("actor");
    const id = c.req.param("id");
    const vote = await reading(c, (db) => readVote(db, id, actor.kind === "tenant" ? actor.tenantId : null));
    if (!vote) throw notFound("council vote", id);
    return c.json(vote);
  });
