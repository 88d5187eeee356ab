import { eq } from "drizzle-orm";
import { environments, tenants } from "../schema/tables/index.ts";
import { createApiKey, createEnvironment, createTenant, findApiKey, upsertModel, upsertRegion, type AdminDb } from "../worker/src/admin/store.ts";

/** The catalogue of the local stack: what the simulated engine serves. */
export const DEMO_MODELS = [
  { id: "sim-llama-8b", family: "llama", kind: "chat" as const, contextLength: 8192, inputPricePerMTokens: "0.100000", outputPricePerMTokens: "0.200000" },
  // An Ollama-style tag as an alias, so Ollama clients can call /api/embed with the name they expect.
  { id: "sim-embed", family: "bge", kind: "embedding" as const, contextLength: 512, inputPricePerMTokens: "0.020000", outputPricePerMTokens: "0", aliases: ["sim-embed:latest"] },
  // Speech to text (/v1/audio/transcriptions): Whisper's 448-token context, $0.006 per minute of audio.
  { id: "sim-whisper", family: "whisper", kind: "transcription" as const, contextLength: 448, inputPricePerMTokens: "0", outputPricePerMTokens: "0", audioPricePerMinute: "0.006000" },
];

/** What seeding produced. */
export interface Seeded {
  tenantId: string;
  environmentId: string;
  apiKey: string;
}

/**
 * Seeds the demo tenant, its `dev` environment, the local region (when given) and the catalogue, and makes sure
 * `demoKey` (kept by the caller across restarts) is a valid key of the demo tenant. The local node
 * registers itself with its heartbeats.
 */
export async function seedDemo(
  db: AdminDb,
  input: { demoKey: string; regionId?: string },
): Promise<Seeded> {
  const actor = "dev-stack";
  // Without regionId (a topology), the caller upserts its own regions.
  if (input.regionId !== undefined) await upsertRegion(db, actor, { id: input.regionId, name: "Local machine", latitude: 32.9, longitude: -97.0 });
  for (const model of DEMO_MODELS) await upsertModel(db, actor, model);

  const tenantId = "ten_demo";
  const existingTenant = await db.select().from(tenants).where(eq(tenants.id, tenantId)).limit(1);
  if (existingTenant.length === 0) await createTenant(db, actor, { id: tenantId, name: "Demo", plan: "free" });
  const environmentId = "env_demo_dev";
  const existingEnv = await db.select().from(environments).where(eq(environments.id, environmentId)).limit(1);
  if (existingEnv.length === 0) await createEnvironment(db, actor, { id: environmentId, tenantId, name: "dev" });

  const known = await findApiKey(db, input.demoKey);
  if (!known) await createApiKey(db, actor, { tenantId, environmentId, name: "demo", presetKey: input.demoKey });
  return { tenantId, environmentId, apiKey: input.demoKey };
}
