/**
 * `/admin/models` (operator only): the model catalogue — what the gateway offers (`/v1/models`) and
 * what it costs (USD per million tokens, cached input price where the engine reports cached tokens,
 * and for transcription models USD per minute of audio).
 * The catalogue travels in the routing snapshot, so a change drops its Redis entry and reaches every
 * isolate within ROUTING_CACHE_ISOLATE_SECONDS. Removing a model deactivates it (usage keeps its name).
 *
 * A LoRA adapter is a catalogue model with a `base_model` (an existing chat model that is not itself
 * an adapter) and, to be loaded on demand, an `adapter_source` (routing/adapters.ts). It is priced by
 * its own row; created without prices (or without context_length or family), it takes its base's.
 *
 * `aliases` are other names the model answers to on every route (routing/aliases.ts): spelled like
 * ids, listed once, and clashing with no other model's id or alias (catalogue-names.ts: 409 naming
 * the model that has the name).
 */
import { asc, eq } from "drizzle-orm";
import { ApiError } from "../errors.ts";
import { Hono } from "hono";
import { z } from "zod";
import { models } from "../../../schema/tables/index.ts";
import { ROUTING_STRATEGIES } from "./snapshot.ts";
import { actorName, type AdminEnv } from "../admin/auth.ts";
import { inTransaction, notFound, readJson, reading, requireOperator, unique } from "../admin/http.ts";
import { cacheKeysOf, dropCaches } from "../admin/invalidate.ts";
import { recordAudit, type AdminDb } from "../admin/store.ts";
import { checkCatalogueNames } from "./catalogue-names.ts";

const price = z.number().min(0).max(1_000_000);
/** What a model id (and an alias) may look like. */
export const MODEL_ID = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$/;
/** Aliases one model may have. */
const MAX_ALIASES = 32;
/** The fields of PUT /admin/models/:id (and of each entry of the catalogue document, with its id). */
export const modelFields = z.strictObject({
  family: z.string().max(100).optional(),
  kind: z.enum(["chat", "embedding", "transcription"]).optional(),
  /** Required when creating a model, except an adapter (which takes its base's). */
  context_length: z.number().int().min(1).max(10_000_000).optional(),
  input_price_per_m_tokens: price.optional(),
  output_price_per_m_tokens: price.optional(),
  cached_input_price_per_m_tokens: price.nullable().optional(),
  /** USD per minute of audio, for transcription models (null: audio not priced by duration). */
  audio_price_per_minute: price.nullable().optional(),
  /** A cache hit's price as a share of what the GPU answer would have cost: 0 (free, the default) to 1 (full price; docs/caching.md). */
  cache_hit_price_factor: z.number().min(0).max(1).optional(),
  active: z.boolean().optional(),
  /** Node-choice strategy (null: least-load); an environment's own strategy wins. */
  routing_strategy: z.enum(ROUTING_STRATEGIES).nullable().optional(),
  /** Makes the model a LoRA adapter of this catalogue model (null: not an adapter). */
  base_model: z.string().min(1).max(200).nullable().optional(),
  /** Where engines load the adapter from at runtime (vLLM's lora_path); null: never loaded on demand. */
  adapter_source: z.string().min(1).max(4096).nullable().optional(),
  /** Other names the model answers to on every route (the whole list; [] clears it; catalogue-names.ts). */
  aliases: z
    .array(z.string().regex(MODEL_ID, "an alias is spelled like a model id: a letter or digit, then letters, digits, '.', '_', ':', '/' or '-', at most 200"))
    .max(MAX_ALIASES)
    .refine((list) => new Set(list).size === list.length, "an alias is listed twice")
    .optional(),
});

/** A catalogue row. */
export type ModelRow = typeof models.$inferSelect;

/** A catalogue row as the admin API shows it. */
export function modelJson(row: ModelRow) {
  return {
    object: "catalogue_model" as const,
    id: row.id,
    family: row.family,
    kind: row.kind,
    context_length: row.contextLength,
    input_price_per_m_tokens: Number(row.inputPricePerMTokens),
    output_price_per_m_tokens: Number(row.outputPricePerMTokens),
    cached_input_price_per_m_tokens: row.cachedInputPricePerMTokens === null ? null : Number(row.cachedInputPricePerMTokens),
    audio_price_per_minute: row.audioPricePerMinute === null ? null : Number(row.audioPricePerMinute),
    cache_hit_price_factor: Number(row.cacheHitPriceFactor),
    active: row.active,
    routing_strategy: row.routingStrategy,
    base_model: row.baseModel,
    adapter_source: row.adapterSource,
    aliases: row.aliases,
    created_at: row.createdAt.toISOString(),
  };
}

function modelId(raw: string): string {
  const id = decodeURIComponent(raw);
  if (!MODEL_ID.test(id)) throw notFound("model", id);
  return id;
}

/** A validated change of one model (left-out fields keep their value). */
export type ModelChange = z.infer<typeof modelFields>;

/**
 * Checks a PUT that makes or keeps the model a LoRA adapter: its base must be an existing chat model
 * that is not itself an adapter, the adapter a chat model, and `adapter_source` belongs to adapters
 * only; a model that is the base of adapters may not become an adapter or an embedding model. For a
 * new adapter, returns what it takes from its base where the body leaves it out: context length,
 * family and each price (the catalogue may still price the adapter differently, by giving prices).
 */
async function checkAdapter(db: AdminDb, id: string, body: ModelChange, before: ModelRow | undefined): Promise<Partial<typeof models.$inferInsert> | null> {
  const base = body.base_model === undefined ? (before?.baseModel ?? null) : body.base_model;
  const source = body.adapter_source === undefined ? (before?.adapterSource ?? null) : body.adapter_source;
  const kind = body.kind ?? before?.kind ?? "chat";
  if (base === null) {
    if (source !== null) throw new ApiError("invalid_value", "Invalid adapter_source: only a LoRA adapter (a model with base_model) has one.", { param: "adapter_source" });
  } else if (kind !== "chat") {
    throw new ApiError("invalid_value", "Invalid kind: a LoRA adapter is a chat model, like its base.", { param: "kind" });
  }
  if ((base !== null || kind !== "chat") && before) {
    const adapters = await db.select({ id: models.id }).from(models).where(eq(models.baseModel, id));
    if (adapters.length > 0) {
      const param = base !== null ? "base_model" : "kind";
      throw new ApiError("invalid_value", `Invalid ${param}: '${id}' is the base model of the adapters ${adapters.map((a) => a.id).join(", ")}, so it stays a chat model that is not an adapter.`, { param });
    }
  }
  if (base === null || (body.base_model === undefined && before)) return null;
  if (base === id) throw new ApiError("invalid_value", "Invalid base_model: a model cannot be its own base.", { param: "base_model" });
  const [baseRow] = await db.select().from(models).where(eq(models.id, base));
  if (!baseRow) throw new ApiError("invalid_value", `Invalid base_model: '${base}' is not in the catalogue.`, { param: "base_model" });
  if (baseRow.kind !== "chat") throw new ApiError("invalid_value", `Invalid base_model: '${base}' is a ${baseRow.kind} model; LoRA adapters apply to chat models.`, { param: "base_model" });
  if (baseRow.baseModel !== null) throw new ApiError("invalid_value", `Invalid base_model: '${base}' is itself an adapter (of '${baseRow.baseModel}').`, { param: "base_model" });
  if (before) return null;
  return {
    contextLength: baseRow.contextLength,
    family: baseRow.family,
    inputPricePerMTokens: baseRow.inputPricePerMTokens,
    outputPricePerMTokens: baseRow.outputPricePerMTokens,
    cachedInputPricePerMTokens: baseRow.cachedInputPricePerMTokens,
  };
}

/**
 * Creates model `id` (`before` undefined) or changes it (`before`: its current row) with the fields
 * `body` gives, after checkAdapter; shared by PUT /:id and the catalogue document. Writes no audit row.
 */
export async function upsertModel(db: AdminDb, id: string, body: ModelChange, before: ModelRow | undefined): Promise<ModelRow> {
  const set = {
    ...(body.context_length === undefined ? {} : { contextLength: body.context_length }),
    ...(body.family === undefined ? {} : { family: body.family }),
    ...(body.kind === undefined ? {} : { kind: body.kind }),
    ...(body.input_price_per_m_tokens === undefined ? {} : { inputPricePerMTokens: String(body.input_price_per_m_tokens) }),
    ...(body.output_price_per_m_tokens === undefined ? {} : { outputPricePerMTokens: String(body.output_price_per_m_tokens) }),
    ...(body.cached_input_price_per_m_tokens === undefined
      ? {}
      : { cachedInputPricePerMTokens: body.cached_input_price_per_m_tokens === null ? null : String(body.cached_input_price_per_m_tokens) }),
    ...(body.audio_price_per_minute === undefined
      ? {}
      : { audioPricePerMinute: body.audio_price_per_minute === null ? null : String(body.audio_price_per_minute) }),
    ...(body.cache_hit_price_factor === undefined ? {} : { cacheHitPriceFactor: String(body.cache_hit_price_factor) }),
    ...(body.active === undefined ? {} : { active: body.active }),
    ...(body.routing_strategy === undefined ? {} : { routingStrategy: body.routing_strategy }),
    ...(body.base_model === undefined ? {} : { baseModel: body.base_model }),
    ...(body.adapter_source === undefined ? {} : { adapterSource: body.adapter_source }),
    ...(body.aliases === undefined ? {} : { aliases: body.aliases }),
  };
  const inherited = await checkAdapter(db, id, body, before);
  if (before) {
    if (Object.keys(set).length === 0) return before;
    const [after] = await db.update(models).set(set).where(eq(models.id, id)).returning();
    if (!after) throw notFound("model", id);
    return after;
  }
  const contextLength = set.contextLength ?? inherited?.contextLength;
  if (contextLength === undefined) {
    throw new ApiError("invalid_value", "Invalid context_length: required when creating a model (an adapter takes its base model's).", { param: "context_length" });
  }
  const [after] = await unique(`Model ${id} was created at the same time by another request; retry.`, null, () =>
    db.insert(models).values({ id, ...inherited, ...set, contextLength }).returning(),
  );
  if (!after) throw notFound("model", id);
  return after;
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
    const body = await readJson(c, modelFields);
    const { row, keys, created } = await inTransaction(c, async (db) => {
      const [before] = await db.select().from(models).where(eq(models.id, id));
      const after = await upsertModel(db, id, body, before);
      const clash = await checkCatalogueNames(db, [id]);
      if (clash) throw clash.error;
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
