/**
 * `/admin/keys`. The full key is in the response to create and rotate only; afterwards only its
 * prefix is ever shown (Postgres keeps its SHA-256). A tenant admin key works only inside its tenant.
 *
 * Reaching the gateway: revoking or rotating a key changes its cached identity, so its Redis cache
 * entry is dropped (invalidate.ts) and every isolate refuses it within KEY_CACHE_ISOLATE_SECONDS
 * (for a rotation, once the overlap has passed). Changing a key's priority class drops its entry the
 * same way. New keys need nothing: they are not cached yet.
 */
import { and, asc, eq, gt, type SQL } from "drizzle-orm";
import { Hono } from "hono";
import { z } from "zod";
import { apiKeys, environments, limitOverrides } from "../../../schema/tables/index.ts";
import { activeKeyMarkerKey, addActiveKey, removeActiveKeys } from "./key-set.ts";
import { ApiError } from "../errors.ts";
import { PRIORITY_CLASSES } from "../priority/class.ts";
import { actorName, ADMIN_SCOPE, type AdminEnv } from "../admin/auth.ts";
import { canSee, inTransaction, notFound, readJson, readQuery, reading, type AdminContext } from "../admin/http.ts";
import { cacheKeysOf, dropCaches } from "../admin/invalidate.ts";
import { decodeCursor, page, pageQuery } from "../admin/pagination.ts";
import { createApiKey, recordAudit, type AdminDb } from "../admin/store.ts";
import { apiKeyJson, type CreatedApiKeyJson } from "../admin/wire.ts";

const id = z.string().min(1).max(100);
/** Scopes a key can have: `chat` (chat and completions), `embeddings`, and `admin` (this API, own tenant). */
const scope = z.enum(["chat", "embeddings", ADMIN_SCOPE]);
/** Scheduling class of a key's requests (null: its environment's; docs/priority.md). */
const priorityClass = z.enum(PRIORITY_CLASSES).nullable();
const createBody = z.strictObject({
  environment_id: id,
  name: z.string().trim().min(1).max(100),
  scopes: z.array(scope).min(1).max(3).optional(),
  allowed_models: z.array(z.string().min(1).max(200)).min(1).max(100).nullable().optional(),
  expires_at: z.iso.datetime({ offset: true }).nullable().optional(),
  priority_class: priorityClass.optional(),
});
const updateBody = z.strictObject({ priority_class: priorityClass.optional() });
/** Up to 30 days of overlap. */
const rotateBody = z.strictObject({ overlap_seconds: z.number().int().min(0).max(30 * 86_400).default(3600) });
const listQuery = z.object({ ...pageQuery, environment_id: id.optional(), tenant_id: id.optional() });

type KeyRow = typeof apiKeys.$inferSelect;

/** Loads a key the actor may see (locked for the transaction); 404 otherwise. */
async function loadKey(c: AdminContext, db: AdminDb, keyId: string, lock: boolean): Promise<KeyRow> {
  const query = db.select().from(apiKeys).where(eq(apiKeys.id, keyId));
  const [row] = lock ? await query.for("update") : await query;
  if (!row || !canSee(c.get("actor"), row.tenantId)) throw notFound("api key", keyId);
  return row;
}

function createdJson(row: KeyRow, key: string): CreatedApiKeyJson {
  return { ...apiKeyJson(row), key };
}

/**
 * Adds a new key to the active-key set before it is shown, so the gateway admits it at once. When
 * Redis cannot take it, the set's marker is dropped too (if possible): the gateway then looks keys up
 * in Postgres until the scheduled job rebuilds the set, instead of refusing the new key. The response
 * says so with `x-switchyard-cache: stale`.
 */
async function publishKey(c: AdminContext, hash: string): Promise<void> {
  const { redis, settings, log } = c.get("deps");
  try {
    await addActiveKey(redis, settings.redisPrefix, hash);
  } catch (err) {
    log("active_key_set_update_failed", { error: String(err) });
    c.header("x-switchyard-cache", "stale");
    await redis.del(activeKeyMarkerKey(settings.redisPrefix)).catch(() => null);
  }
}

/** Responses with a full key must not be stored by any cache on the way. */
function noStore(c: AdminContext): void {
  c.header("cache-control", "no-store");
}

/** The key routes, mounted at `/admin/keys`. */
export const keyRoutes = new Hono<AdminEnv>()
  .post("/", async (c) => {
    const body = await readJson(c, createBody);
    const expiresAt = body.expires_at ? new Date(body.expires_at) : null;
    if (expiresAt && expiresAt.getTime() <= Date.now()) throw new ApiError("invalid_value", "expires_at must be in the future.", { param: "expires_at" });
    const created = await inTransaction(c, async (db) => {
      const [env] = await db.select().from(environments).where(eq(environments.id, body.environment_id));
      if (!env || !canSee(c.get("actor"), env.tenantId)) throw notFound("environment", body.environment_id);
      return createApiKey(db, actorName(c.get("actor")), {
        tenantId: env.tenantId,
        environmentId: env.id,
        name: body.name,
        scopes: body.scopes ? [...new Set(body.scopes)] : undefined,
        allowedModels: body.allowed_models ?? null,
        expiresAt,
        priorityClass: body.priority_class ?? null,
      });
    });
    await publishKey(c, created.row.hash);
    noStore(c);
    return c.json(createdJson(created.row, created.key), 201);
  })
  .get("/", async (c) => {
    const { limit, cursor, environment_id, tenant_id } = readQuery(c, listQuery);
    const actor = c.get("actor");
    if (tenant_id !== undefined && !canSee(actor, tenant_id)) throw notFound("tenant", tenant_id);
    const after = decodeCursor(cursor, ["id"]);
    const rows = await reading(c, async (db) => {
      if (environment_id !== undefined) {
        const [env] = await db.select({ tenantId: environments.tenantId }).from(environments).where(eq(environments.id, environment_id));
        if (!env || !canSee(actor, env.tenantId)) throw notFound("environment", environment_id);
      }
      const tenantFilter = tenant_id ?? (actor.kind === "tenant" ? actor.tenantId : undefined);
      const where: (SQL | undefined)[] = [
        after ? gt(apiKeys.id, after.id) : undefined,
        tenantFilter ? eq(apiKeys.tenantId, tenantFilter) : undefined,
        environment_id ? eq(apiKeys.environmentId, environment_id) : undefined,
      ];
      return db.select().from(apiKeys).where(and(...where)).orderBy(asc(apiKeys.id)).limit(limit + 1);
    });
    const now = Date.now();
    return c.json(page(rows, limit, (r) => apiKeyJson(r, now), (r) => ({ id: r.id })));
  })
  .get("/:id", async (c) => {
    const row = await reading(c, (db) => loadKey(c, db, c.req.param("id"), false));
    return c.json(apiKeyJson(row));
  })
  .patch("/:id", async (c) => {
    const body = await readJson(c, updateBody);
    const keyId = c.req.param("id");
    const { after, cacheKeys } = await inTransaction(c, async (db) => {
      const before = await loadKey(c, db, keyId, true);
      if (body.priority_class === undefined || body.priority_class === before.priorityClass) return { after: before, cacheKeys: [] };
      const [after] = await db.update(apiKeys).set({ priorityClass: body.priority_class }).where(eq(apiKeys.id, keyId)).returning();
      if (!after) throw notFound("api key", keyId);
      await recordAudit(db, actorName(c.get("actor")), "api_key.update", "api_key", keyId, after.tenantId, { before: apiKeyJson(before), after: apiKeyJson(after) });
      // The class is part of the key's cached identity: drop it so the gateway follows.
      return { after, cacheKeys: await cacheKeysOf(db, c.get("deps").settings.redisPrefix, { keyIds: [keyId] }) };
    });
    await dropCaches(c, cacheKeys);
    return c.json(apiKeyJson(after));
  })
  .post("/:id/rotate", async (c) => {
    const { overlap_seconds } = await readJson(c, rotateBody);
    const keyId = c.req.param("id");
    const { created, old, cacheKeys } = await inTransaction(c, async (db) => {
      const before = await loadKey(c, db, keyId, true);
      const now = Date.now();
      if (before.revokedAt !== null) throw new ApiError("conflict", `Key ${keyId} is revoked; create a new key instead.`);
      if (before.expiresAt !== null && before.expiresAt.getTime() <= now) throw new ApiError("conflict", `Key ${keyId} has expired; create a new key instead.`);
      const actor = actorName(c.get("actor"));
      // The new key keeps everything but the secret: environment, name, scopes, models, expiry, limits.
      const created = await createApiKey(db, actor, {
        tenantId: before.tenantId,
        environmentId: before.environmentId,
        name: before.name,
        scopes: before.scopes,
        allowedModels: before.allowedModels,
        expiresAt: before.expiresAt,
        priorityClass: before.priorityClass,
      });
      const [override] = await db.select().from(limitOverrides).where(and(eq(limitOverrides.scope, "key"), eq(limitOverrides.scopeId, keyId)));
      if (override) await db.insert(limitOverrides).values({ ...override, scopeId: created.id, updatedAt: new Date() });
      // The old key keeps working for the overlap (never longer than it would have anyway).
      const overlapEnd = now + overlap_seconds * 1000;
      const expiresAt = new Date(before.expiresAt === null ? overlapEnd : Math.min(before.expiresAt.getTime(), overlapEnd));
      const [old] = await db.update(apiKeys).set({ expiresAt }).where(eq(apiKeys.id, keyId)).returning();
      if (!old) throw notFound("api key", keyId);
      await recordAudit(db, actor, "api_key.rotate", "api_key", keyId, before.tenantId, {
        before: apiKeyJson(before, now),
        after: apiKeyJson(old, now),
        replaced_by: created.id,
        overlap_seconds,
      });
      return { created, old, cacheKeys: await cacheKeysOf(db, c.get("deps").settings.redisPrefix, { keyIds: [keyId] }) };
    });
    await publishKey(c, created.row.hash);
    await dropCaches(c, cacheKeys);
    noStore(c);
    return c.json({ ...createdJson(created.row, created.key), rotated_from: apiKeyJson(old) }, 201);
  })
  .post("/:id/revoke", async (c) => {
    const keyId = c.req.param("id");
    const { row, cacheKeys } = await inTransaction(c, async (db) => {
      const before = await loadKey(c, db, keyId, true);
      // Revoking twice is not an error: the key stays revoked as of the first time.
      if (before.revokedAt !== null) return { row: before, cacheKeys: [] };
      const [after] = await db.update(apiKeys).set({ revokedAt: new Date() }).where(eq(apiKeys.id, keyId)).returning();
      if (!after) throw notFound("api key", keyId);
      await recordAudit(db, actorName(c.get("actor")), "api_key.revoke", "api_key", keyId, after.tenantId, { before: apiKeyJson(before), after: apiKeyJson(after) });
      return { row: after, cacheKeys: await cacheKeysOf(db, c.get("deps").settings.redisPrefix, { keyIds: [keyId] }) };
    });
    await dropCaches(c, cacheKeys);
    if (cacheKeys.length > 0) {
      await removeActiveKeys(c.get("deps").redis, c.get("deps").settings.redisPrefix, [row.hash]).catch((err: unknown) =>
        c.get("deps").log("active_key_set_update_failed", { keyId, error: String(err) }),
      );
    }
    return c.json(apiKeyJson(row));
  });
