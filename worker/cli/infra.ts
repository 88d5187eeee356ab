/**
 * Infrastructure commands that work straight in Postgres: regions, the model catalogue and nodes
 * are the operator's plumbing, not tenancy, and node secrets are derived from NODE_SIGNING_SECRET,
 * which only the operator's machine and the worker hold. They drop the gateway's routing snapshot
 * from Redis when Redis is configured, so changes show within ROUTING_CACHE_ISOLATE_SECONDS.
 */
import type { Redis } from "@upstash/redis";
import { eq } from "drizzle-orm";
import { nodes } from "../../schema/tables/index.ts";
import { upsertModel, upsertNode, upsertRegion, type AdminDb } from "../src/admin/store.ts";
import { routingCacheKey } from "../src/routing/snapshot.ts";
import { AdminUsageError, flag, listFlag, need, type Command, type CommandContext } from "./context.ts";

/** What the infrastructure commands need; built by admin.ts from env on first use. */
export interface InfraContext {
  db: AdminDb;
  actor: string;
  redis: Redis | null;
  redisPrefix: string;
  nodeSecret: (nodeId: string, version: number) => Promise<string>;
}

function number(ctx: CommandContext, name: string, fallback?: number): number {
  const raw = flag(ctx, name);
  if (raw === undefined) {
    if (fallback === undefined) throw new AdminUsageError(`Missing --${name}.`);
    return fallback;
  }
  const value = Number(raw);
  if (!Number.isFinite(value)) throw new AdminUsageError(`--${name} must be a number, got "${raw}".`);
  return value;
}

async function dropRouting(ctx: CommandContext, infra: InfraContext): Promise<void> {
  if (!infra.redis) {
    ctx.warn("Redis is not configured (UPSTASH_REDIS_REST_URL/TOKEN): the gateway picks this change up when its routing cache expires.");
    return;
  }
  await infra.redis.del(routingCacheKey(infra.redisPrefix));
}

/** `region upsert`, `model upsert`, `node add`, `node secret`. */
export const infraCommands: Record<string, Command> = {
  "region upsert": async (ctx) => {
    const infra = ctx.infra();
    const multiplier = flag(ctx, "multiplier");
    if (multiplier !== undefined && !(Number(multiplier) > 0)) throw new AdminUsageError(`--multiplier must be a positive number, got "${multiplier}".`);
    await upsertRegion(infra.db, infra.actor, {
      id: need(ctx, "id"),
      name: need(ctx, "name"),
      latitude: number(ctx, "lat"),
      longitude: number(ctx, "lon"),
      ...(multiplier === undefined ? {} : { priceMultiplier: String(Number(multiplier)) }),
    });
    await dropRouting(ctx, infra);
  },
  "model upsert": async (ctx) => {
    const kind = flag(ctx, "kind") ?? "chat";
    if (kind !== "chat" && kind !== "embedding" && kind !== "transcription") throw new AdminUsageError(`--kind must be chat, embedding or transcription, got "${kind}".`);
    const audioPrice = flag(ctx, "audio-price");
    const input = {
      id: need(ctx, "id"),
      kind,
      family: flag(ctx, "family") ?? "",
      contextLength: number(ctx, "context"),
      inputPricePerMTokens: String(number(ctx, "input-price", 0)),
      outputPricePerMTokens: String(number(ctx, "output-price", 0)),
      ...(audioPrice === undefined ? {} : { audioPricePerMinute: String(number(ctx, "audio-price")) }),
    } as const;
    const infra = ctx.infra();
    await upsertModel(infra.db, infra.actor, input);
    await dropRouting(ctx, infra);
  },
  "node add": async (ctx) => {
    const input = { id: need(ctx, "id"), regionId: need(ctx, "region"), url: need(ctx, "url"), models: listFlag(ctx, "models") ?? [] };
    if (input.models.length === 0) throw new AdminUsageError("Missing --models. Run with --help for usage.");
    const infra = ctx.infra();
    const node = await upsertNode(infra.db, infra.actor, input);
    await dropRouting(ctx, infra);
    ctx.warn(`Node ${node.id} registered. Give this secret to its backplane as BACKPLANE_SECRET:`);
    ctx.print(await infra.nodeSecret(node.id, node.secretVersion));
  },
  "node secret": async (ctx) => {
    const id = need(ctx, "id");
    if (!/^[a-z0-9][a-z0-9._-]{0,62}$/.test(id)) throw new AdminUsageError("--id must be 1-63 lowercase letters, digits, '.', '_' or '-'.");
    const infra = ctx.infra();
    const [node] = await infra.db.select().from(nodes).where(eq(nodes.id, id));
    // A node that is not registered yet signs with secret version 1 and registers itself with its first heartbeat.
    if (!node) ctx.warn(`Node ${id} is not registered yet: it registers itself with its first heartbeat. Its secret:`);
    ctx.print(await infra.nodeSecret(id, node?.secretVersion ?? 1));
  },
};
