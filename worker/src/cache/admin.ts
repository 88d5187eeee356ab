/**
 * `/admin/cache/:tenant_id` (docs/caching.md): how much of the response and embeddings caches a
 * tenant holds, and purging it (after a model was replaced behind the same id, say). A tenant admin
 * key sees only its own tenant; anything else is 404. Redis only: entries live nowhere else.
 */
import { Hono } from "hono";
import { actorName, type AdminEnv } from "../admin/auth.ts";
import { canSee, inTransaction, notFound } from "../admin/http.ts";
import { recordAudit } from "../admin/store.ts";
import { tenantIndexKeys } from "./store.ts";
import type { TenantCacheJson, TenantCachePurgeJson } from "./wire.ts";

/**
 * KEYS: the tenant's index and sizes. Deletes every entry the index lists, then the bookkeeping;
 * returns how many entries it deleted. In slices of 500 (Lua's unpack has a limit).
 */
const PURGE_SCRIPT = `
local deleted = 0
while true do
  local keys = redis.call('ZRANGE', KEYS[1], 0, 499)
  if #keys == 0 then break end
  deleted = deleted + redis.call('DEL', unpack(keys))
  redis.call('ZREM', KEYS[1], unpack(keys))
end
redis.call('DEL', KEYS[1], KEYS[2])
return deleted
`;

/** The cache routes, mounted at `/admin/cache`. */
export const cacheRoutes = new Hono<AdminEnv>()
  .get("/:tenant_id", async (c) => {
    const tenantId = c.req.param("tenant_id");
    if (!canSee(c.get("actor"), tenantId)) throw notFound("tenant", tenantId);
    const { redis, settings } = c.get("deps");
    const [index, sizes] = tenantIndexKeys(settings.redisPrefix, tenantId);
    const pipe = redis.pipeline();
    pipe.zcount(index, Date.now(), "+inf");
    pipe.hget(sizes, "*");
    const [entries, bytes] = await pipe.exec<[number, number | string | null]>();
    const body: TenantCacheJson = { object: "tenant_cache", tenant_id: tenantId, entries, bytes: Number(bytes ?? 0), max_bytes: settings.cache.tenantMaxBytes };
    return c.json(body);
  })
  .delete("/:tenant_id", async (c) => {
    const tenantId = c.req.param("tenant_id");
    if (!canSee(c.get("actor"), tenantId)) throw notFound("tenant", tenantId);
    const { redis, settings } = c.get("deps");
    const deleted = Number(await redis.eval(PURGE_SCRIPT, tenantIndexKeys(settings.redisPrefix, tenantId), []));
    await inTransaction(c, (db) => recordAudit(db, actorName(c.get("actor")), "cache.purge", "tenant", tenantId, tenantId, { deleted }));
    const body: TenantCachePurgeJson = { object: "tenant_cache", tenant_id: tenantId, purged: true, deleted };
    return c.json(body);
  });
