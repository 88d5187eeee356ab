import { eq } from "drizzle-orm";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import * as schema from "../../../schema/tables/index.ts";
import { apiKeys, auditLogs, environments, models, nodes, regions, tenants } from "../../../schema/tables/index.ts";
import { generateApiKey, hashApiKey, looksLikeApiKey, visiblePrefix } from "../auth/keys.ts";
import { apiKeyJson, environmentJson, tenantJson } from "./wire.ts";

/**
 * Administrative writes shared by the local stack and tests (Node) and the worker's admin API.
 * Works with any drizzle Postgres driver. Every change writes an audit log row.
 */
export type AdminDb = PgDatabase<PgQueryResultHKT, typeof schema>;

/** A new random id with a readable prefix, e.g. `ten_3f9c…`. */
export function newId(prefix: string): string {
  const bytes = crypto.getRandomValues(new Uint8Array(10));
  let hex = "";
  for (const b of bytes) hex += b.toString(16).padStart(2, "0");
  return `${prefix}_${hex}`;
}

/** Writes one audit log row (call it in the transaction of the change it records). */
export async function recordAudit(
  db: AdminDb,
  actor: string,
  action: string,
  targetType: string,
  targetId: string,
  tenantId: string | null,
  details: Record<string, unknown>,
): Promise<void> {
  await db.insert(auditLogs).values({ id: newId("aud"), actor, action, targetType, targetId, tenantId, details });
}

/** Creates a tenant. */
export async function createTenant(
  db: AdminDb,
  actor: string,
  input: { id?: string; name: string; plan?: string; stripeCustomerId?: string | null; auditRedactions?: string[] | null; auditRetentionDays?: number | null },
): Promise<typeof tenants.$inferSelect> {
  const [row] = await db
    .insert(tenants)
    .values({
      id: input.id ?? newId("ten"),
      name: input.name,
      plan: input.plan ?? "free",
      stripeCustomerId: input.stripeCustomerId ?? null,
      auditRedactions: input.auditRedactions ?? null,
      auditRetentionDays: input.auditRetentionDays ?? null,
    })
    .returning();
  if (!row) throw new Error("tenant insert returned no row");
  await recordAudit(db, actor, "tenant.create", "tenant", row.id, row.id, { after: tenantJson(row) });
  return row;
}

/** Creates an environment under a tenant. */
export async function createEnvironment(
  db: AdminDb,
  actor: string,
  input: {
    id?: string;
    tenantId: string;
    name: string;
    pinnedRegion?: string | null;
    routingStrategy?: (typeof environments.$inferInsert)["routingStrategy"];
    regionOverrides?: string[] | null;
    auditMode?: (typeof environments.$inferInsert)["auditMode"];
    cacheEnabled?: boolean;
    priorityClass?: (typeof environments.$inferInsert)["priorityClass"];
  },
): Promise<typeof environments.$inferSelect> {
  const [row] = await db
    .insert(environments)
    .values({
      id: input.id ?? newId("env"),
      tenantId: input.tenantId,
      name: input.name,
      pinnedRegion: input.pinnedRegion ?? null,
      routingStrategy: input.routingStrategy ?? null,
      regionOverrides: input.regionOverrides ?? null,
      auditMode: input.auditMode ?? "off",
      cacheEnabled: input.cacheEnabled ?? true,
      priorityClass: input.priorityClass ?? null,
    })
    .returning();
  if (!row) throw new Error("environment insert returned no row");
  await recordAudit(db, actor, "environment.create", "environment", row.id, row.tenantId, { after: environmentJson(row) });
  return row;
}

/** A created key: the full key is in `key` and is never retrievable again; `row` is what was stored. */
export interface CreatedKey {
  id: string;
  key: string;
  prefix: string;
  row: typeof apiKeys.$inferSelect;
}

/**
 * Creates an API key and stores only its hash and visible prefix. `presetKey` lets the local stack
 * re-register the same demo key across restarts; production callers leave it out.
 */
export async function createApiKey(
  db: AdminDb,
  actor: string,
  input: { tenantId: string; environmentId: string; name: string; scopes?: string[]; allowedModels?: string[] | null; expiresAt?: Date | null; presetKey?: string; priorityClass?: (typeof apiKeys.$inferInsert)["priorityClass"] },
): Promise<CreatedKey> {
  const key = input.presetKey ?? generateApiKey();
  if (!looksLikeApiKey(key)) throw new Error("preset key does not have the sk-sy- format");
  const id = newId("key");
  const prefix = visiblePrefix(key);
  const [row] = await db
    .insert(apiKeys)
    .values({
      id,
      tenantId: input.tenantId,
      environmentId: input.environmentId,
      name: input.name,
      prefix,
      hash: await hashApiKey(key),
      scopes: input.scopes ?? ["chat", "embeddings"],
      allowedModels: input.allowedModels ?? null,
      expiresAt: input.expiresAt ?? null,
      priorityClass: input.priorityClass ?? null,
    })
    .returning();
  if (!row) throw new Error("api key insert returned no row");
  // apiKeyJson drops the hash: it never goes into the audit log.
  await recordAudit(db, actor, "api_key.create", "api_key", id, input.tenantId, { after: apiKeyJson(row) });
  return { id, key, prefix, row };
}

/** Finds a key by its full value (hash lookup); null when unknown. */
export async function findApiKey(db: AdminDb, key: string): Promise<typeof apiKeys.$inferSelect | null> {
  const rows = await db.select().from(apiKeys).where(eq(apiKeys.hash, await hashApiKey(key))).limit(1);
  return rows[0] ?? null;
}

/** Creates or updates a region. */
export async function upsertRegion(db: AdminDb, actor: string, input: typeof regions.$inferInsert): Promise<void> {
  await db
    .insert(regions)
    .values(input)
    .onConflictDoUpdate({
      target: regions.id,
      set: { name: input.name, latitude: input.latitude, longitude: input.longitude, ...(input.priceMultiplier === undefined ? {} : { priceMultiplier: input.priceMultiplier }) },
    });
  await recordAudit(db, actor, "region.upsert", "region", input.id, null, { name: input.name });
}

/** Creates or updates a catalogue model. */
export async function upsertModel(db: AdminDb, actor: string, input: typeof models.$inferInsert): Promise<void> {
  const { id, ...rest } = input;
  await db.insert(models).values(input).onConflictDoUpdate({ target: models.id, set: rest });
  await recordAudit(db, actor, "model.upsert", "model", id, null, { ...rest });
}

/** Registers a node or updates its URL, region and models. */
export async function upsertNode(
  db: AdminDb,
  actor: string,
  input: { id: string; regionId: string; url: string; models: string[] },
): Promise<typeof nodes.$inferSelect> {
  const [row] = await db
    .insert(nodes)
    .values(input)
    .onConflictDoUpdate({ target: nodes.id, set: { regionId: input.regionId, url: input.url, models: input.models } })
    .returning();
  if (!row) throw new Error("node upsert returned no row");
  await recordAudit(db, actor, "node.upsert", "node", row.id, null, { url: row.url, models: row.models });
  return row;
}
