import { randomBytes } from "node:crypto";
import { eq } from "drizzle-orm";
import { apiKeys, tenants } from "../../schema/tables/index.ts";
import { createApiKey, createEnvironment, createTenant, upsertModel, upsertNode, upsertRegion, type AdminDb } from "../../worker/src/admin/store.ts";
import { DEMO_MODELS } from "../../dev/seed.ts";
import { budgetMarkerKey } from "../../worker/src/limits/budgets.ts";
import type { TestKeys } from "./context.ts";

/** The admin URL of the machine's Postgres (tests create their own databases on it). */
export const PG_ADMIN_URL = process.env.TEST_PG_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
/** The machine's Redis (tests use their own key prefix). */
export const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

/** A short random suffix for database names and Redis prefixes. */
export function uniqueSuffix(): string {
  return randomBytes(5).toString("hex");
}


/** Seeds two tenants, the catalogue, and keys in every state; nodes are passed by the caller. */
export async function seedTestTenants(
  db: AdminDb,
  nodes: { id: string; url: string; models: string[]; regionId?: string }[],
): Promise<TestKeys & { tenantId: string; otherTenantId: string }> {
  const actor = "test";
  await upsertRegion(db, actor, { id: "local", name: "Local", latitude: 0, longitude: 0 });
  for (const m of DEMO_MODELS) await upsertModel(db, actor, m);
  await upsertModel(db, actor, { id: "hb-model", kind: "chat", contextLength: 4096 });
  await upsertModel(db, actor, { id: "legacy-model", kind: "chat", contextLength: 4096 });
  for (const n of nodes) await upsertNode(db, actor, { regionId: "local", ...n });

  const tenant = await createTenant(db, actor, { name: "Acme" });
  const env = await createEnvironment(db, actor, { tenantId: tenant.id, name: "prod" });
  const make = (name: string, extra: Partial<Parameters<typeof createApiKey>[2]> = {}) =>
    createApiKey(db, actor, { tenantId: tenant.id, environmentId: env.id, name, ...extra }).then((k) => k.key);
  const valid = await make("valid");
  const revoked = await make("revoked");
  await db.update(apiKeys).set({ revokedAt: new Date() }).where(eq(apiKeys.name, "revoked"));
  const expired = await make("expired", { expiresAt: new Date(Date.now() - 60_000) });
  const embeddingsOnly = await make("embeddings-only", { scopes: ["embeddings"] });
  const chatOnlyModel = await make("chat-model-only", { allowedModels: ["sim-llama-8b"] });
  const toRevoke = await make("to-revoke");

  const other = await createTenant(db, actor, { name: "Globex" });
  const otherEnv = await createEnvironment(db, actor, { tenantId: other.id, name: "prod" });
  const otherTenant = (await createApiKey(db, actor, { tenantId: other.id, environmentId: otherEnv.id, name: "globex" })).key;

  const suspendedTenant = await createTenant(db, actor, { name: "Initech" });
  const suspendedEnv = await createEnvironment(db, actor, { tenantId: suspendedTenant.id, name: "prod" });
  const suspended = (await createApiKey(db, actor, { tenantId: suspendedTenant.id, environmentId: suspendedEnv.id, name: "initech" })).key;
  await db.update(tenants).set({ status: "suspended" }).where(eq(tenants.id, suspendedTenant.id));
  return { valid, toRevoke, revoked, expired, suspended, embeddingsOnly, chatOnlyModel, otherTenant, tenantId: tenant.id, otherTenantId: other.id };
}

/** Deletes every Redis key under `prefix` (test clean-up). */
export async function deleteRedisPrefix(prefix: string): Promise<void> {
  const { Redis } = await import("ioredis");
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  try {
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 500);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
}

/** Marks the budget counters under `prefix` as seeded, as the scheduled job does (worker/src/limits/budget-seed.ts). */
export async function seedBudgetMarker(prefix: string): Promise<void> {
  const { Redis } = await import("ioredis");
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  try {
    await redis.set(budgetMarkerKey(prefix), Date.now());
  } finally {
    redis.disconnect();
  }
}
