/**
 * `/admin/models` (operator only): the model catalogue — what the gateway offers (`/v1/models`) and
 * what it costs (USD per million tokens, cached input price where the engine reports cached tokens).
 * The catalogue travels in the routing snapshot, so a change drops its Redis entry and reaches every
 * isolate within ROUTING_CACHE_ISOLATE_SECONDS. Removing a model deactivates it (usage keeps its name).
 */
import { asc, eq } from "drizzle-orm";
import { Hono } from "hono";
import { z } from "zod";
import { models } from "../../../schema/tables/index.ts";
import { ROUTING_STRATEGIES } from "./snapshot.ts";
import { actorName, type AdminEnv } from "../admin/auth.ts";
import { inTransaction, notFound, readJson, reading, requireOperator } from "../admin/http.ts";
import { cacheKeysOf, dropCaches } from "../admin/invalidate.ts";
import { recordAudit } from "../admin/store.ts";

const price = z.number().min(0).max(1_000_000);
const putBody = z.strictObject({
  family: z.string().max(100).optional(),
  kind: z.enum(["chat", "embedding"]).optional(),
  context_length: z.number().int().min(1).max(10_000_000),
  input_price_per_m_tokens: price.optional(),
  output_price_per_m_tokens: price.optional(),
  cached_input_price_per_m_tokens: price.nullable().optional(),
  active: z.boolean().optional(),
  /** Node-choice strategy (null: least-load); an environment's own strategy wins. */
  routing_strategy: z.enum(ROUTING_STRATEGIES).nullable().optional(),
});
const MODEL_ID = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$/;

type ModelRow = typeof models.$inferSelect;

function modelJson(row: ModelRow) {
  return {
    object: "catalogue_model" as const,
    id: row.id,
    family: row.family,
    kind: row.kind,
    context_length: row.contextLength,
    input_price_per_m_tokens: Number(row.inputPricePerMTokens),
    output_price_per_m_tokens: Number(row.outputPricePerMTokens),
    cached_input_price_per_m_tokens: row.cachedInputPricePerMTokens === null ? null : Number(row.cachedInputPricePerMTokens),
    active: row.active,
    routing_strategy: row.routingStrategy,
    created_at: row.createdAt.toISOString(),
  };
}

function modelId(raw: string): string {
  const id = decodeURIComponent(raw);
  if (!MODEL_ID.test(id)) throw notFound("model", id);
  return id;
}

/** The catalogue routes. */
export const modelRoutes = new Hono<AdminEnv>()
  .get("/", async (c) => {
    requireOperator(c.get("actor"), "manage the model catalogue");
    const rows = await reading(c, (db) => db.select().from(models).orderBy(asc(models.id)));
    return c.json({ object: "list", data: rows.map(modelJson), next_cursor: null });
  })
  .get("/:id", async (c) => {
    requireOperator(c.get("actor"), "manage the model catalogue");
    const id = modelId(c.req.param("id"));
    const [row] = await reading(c, (db) => db.select().from(models).where(eq(models.id, id)));
    if (!row) throw notFound("model", id);
    return c.json(modelJson(row));
  })
  .put("/:id", async (c) => {
    requireOperator(c.get("actor"), "manage the model catalogue");
    const id = modelId(c.req.param("id"));
    const body = await readJson(c, putBody);
    const set = {
      contextLength: body.context_length,
      ...(body.family === undefined ? {} : { family: body.family }),
      ...(body.kind === undefined ? {} : { kind: body.kind }),
      ...(body.input_price_per_m_tokens === undefined ? {} : { inputPricePerMTokens: String(body.input_price_per_m_tokens) }),
      ...(body.output_price_per_m_tokens === undefined ? {} : { outputPricePerMTokens: String(body.output_price_per_m_tokens) }),
      ...(body.cached_input_price_per_m_tokens === undefined
        ? {}
        : { cachedInputPricePerMTokens: body.cached_input_price_per_m_tokens === null ? null : String(body.cached_input_price_per_m_tokens) }),
      ...(body.active === undefined ? {} : { active: body.active }),
      ...(body.routing_strategy === undefined ? {} : { routingStrategy: body.routing_strategy }),
    };
    const values = { id, ...set };
    const { row, keys, created } = await inTransaction(c, async (db) => {
      const [before] = await db.select().from(models).where(eq(models.id, id));
      const [after] = await db.insert(models).values(values).onConflictDoUpdate({ target: models.id, set }).returning();
      if (!after) throw notFound("model", id);
      await recordAudit(db, actorName(c.get("actor")), before ? "model.update" : "model.create", "model", id, null, {
        before: before ? modelJson(before) : null,
        after: modelJson(after),
      });
      return { row: after, keys: await cacheKeysOf(db, c.get("deps").settings.redisPrefix, { routing: true }), created: !before };
    });
    await dropCaches(c, keys);
    return c.json(modelJson(row), created ? 201 : 200);
  })
  .delete("/:id", async (c) => {
    requireOperator(c.get("actor"), "manage the model catalogue");
    const id = modelId(c.req.param("id"));
    const { row, keys } = await inTransaction(c, async (db) => {
      const [before] = await db.select().from(models).where(eq(models.id, id));
      if (!before) throw notFound("model", id);
      const [after] = await db.update(models).set({ active: false }).where(eq(models.id, id)).returning();
      if (!after) throw notFound("model", id);
      await recordAudit(db, actorName(c.get("actor")), "model.deactivate", "model", id, null, { before: modelJson(before), after: modelJson(after) });
      return { row: after, keys: await cacheKeysOf(db, c.get("deps").settings.redisPrefix, { routing: true }) };
    });
    await dropCaches(c, keys);
    return c.json(modelJson(row));
  });
