import { eq, or } from "drizzle-orm";
import type { Redis } from "@upstash/redis";
import { apiKeys, nodes } from "../../schema/tables/index.ts";
import { createApiKey, createEnvironment, createTenant, upsertModel, upsertNode, upsertRegion, type AdminDb } from "../src/admin/store.ts";
import { keyCacheKey } from "../src/auth/identity.ts";
import { routingCacheKey } from "../src/routing/snapshot.ts";

/** Everything a command needs; built by admin.ts from env. */
export interface AdminContext {
  db: AdminDb;
  actor: string;
  redis: Redis | null;
  redisPrefix: string;
  nodeSecret: (nodeId: string, version: number) => Promise<string>;
  print: (line: string) => void;
  warn: (line: string) => void;
}

/** A mistake in how the CLI was called; printed without a stack trace. */
export class AdminUsageError extends Error {
  override name = "AdminUsageError";
}

/** Help text of the admin CLI. */
export const ADMIN_HELP = `Usage: npm run admin -- <command> [--flag value …]

  tenant create  --name N [--plan P]
  env create     --tenant T --name N [--region R]          (R pins the environment to a region)
  key create     --tenant T --env E --name N [--scopes chat,embeddings] [--models m1,m2] [--expires 2027-01-01T00:00:00Z]
  key revoke     --id K | --prefix sk-sy-XXXXXX
  region upsert  --id R --name N --lat 50.1 --lon 8.7
  model upsert   --id M --context N [--kind chat|embedding] [--family F] [--input-price USD/M] [--output-price USD/M]
  node add       --id N --region R --url https://gpu1.example.com --models m1,m2   (prints the node's secret)
  node secret    --id N                                    (prints the node's secret; for a new node, the one it
                                                           registers itself with through its first heartbeat)

Environment: DATABASE_URL (required); UPSTASH_REDIS_REST_URL, UPSTASH_REDIS_REST_TOKEN and REDIS_PREFIX
so changes reach the gateway at once (otherwise within KEY_CACHE_REDIS_SECONDS / ROUTING_CACHE_REDIS_SECONDS);
NODE_SIGNING_SECRET for node commands. See docs/configuration.md.`;

function need(flags: Record<string, string | undefined>, name: string): string {
  const value = flags[name];
  if (value === undefined || value === "" || value === "true") throw new AdminUsageError(`Missing --${name}. Run with --help for usage.`);
  return value;
}

function list(value: string | undefined): string[] | undefined {
  return value === undefined ? undefined : value.split(",").map((s) => s.trim()).filter(Boolean);
}

function number(flags: Record<string, string | undefined>, name: string, fallback?: number): number {
  const raw = flags[name];
  if (raw === undefined) {
    if (fallback === undefined) throw new AdminUsageError(`Missing --${name}.`);
    return fallback;
  }
  const value = Number(raw);
  if (!Number.isFinite(value)) throw new AdminUsageError(`--${name} must be a number, got "${raw}".`);
  return value;
}

async function invalidate(ctx: AdminContext, keys: string[]): Promise<void> {
  if (!ctx.redis) {
    ctx.warn("Redis is not configured (UPSTASH_REDIS_REST_URL/TOKEN): the gateway picks this change up when its cache expires.");
    return;
  }
  await ctx.redis.del(...keys);
}

/** Runs one admin command. */
export async function runAdminCommand(ctx: AdminContext, args: string[], flags: Record<string, string | undefined>): Promise<void> {
  const [noun, verb] = args;
  const command = `${noun ?? ""} ${verb ?? ""}`;
  switch (command) {
    case "tenant create": {
      const tenant = await createTenant(ctx.db, ctx.actor, { name: need(flags, "name"), plan: flags.plan });
      ctx.print(tenant.id);
      return;
    }
    case "env create": {
      const env = await createEnvironment(ctx.db, ctx.actor, { tenantId: need(flags, "tenant"), name: need(flags, "name"), pinnedRegion: flags.region ?? null });
      ctx.print(env.id);
      return;
    }
    case "key create": {
      const expires = flags.expires === undefined ? null : new Date(flags.expires);
      if (expires && Number.isNaN(expires.getTime())) throw new AdminUsageError(`--expires must be an ISO date, got "${flags.expires}".`);
      const created = await createApiKey(ctx.db, ctx.actor, {
        tenantId: need(flags, "tenant"),
        environmentId: need(flags, "env"),
        name: need(flags, "name"),
        scopes: list(flags.scopes),
        allowedModels: list(flags.models) ?? null,
        expiresAt: expires,
      });
      ctx.warn(`Created key ${created.id} (${created.prefix}…). This is the only time the full key is shown:`);
      ctx.print(created.key);
      return;
    }
    case "key revoke": {
      const id = flags.id;
      const prefix = flags.prefix;
      if (!id && !prefix) throw new AdminUsageError("Give --id or --prefix of the key to revoke.");
      const revoked = await ctx.db
        .update(apiKeys)
        .set({ revokedAt: new Date() })
        .where(or(id ? eq(apiKeys.id, id) : undefined, prefix ? eq(apiKeys.prefix, prefix) : undefined))
        .returning({ id: apiKeys.id, hash: apiKeys.hash });
      if (revoked.length === 0) throw new AdminUsageError("No key matches.");
      await invalidate(ctx, revoked.map((k) => keyCacheKey(ctx.redisPrefix, k.hash)));
      ctx.print(`Revoked ${revoked.map((k) => k.id).join(", ")}.`);
      return;
    }
    case "region upsert": {
      await upsertRegion(ctx.db, ctx.actor, { id: need(flags, "id"), name: need(flags, "name"), latitude: number(flags, "lat"), longitude: number(flags, "lon") });
      await invalidate(ctx, [routingCacheKey(ctx.redisPrefix)]);
      return;
    }
    case "model upsert": {
      const kind = flags.kind ?? "chat";
      if (kind !== "chat" && kind !== "embedding") throw new AdminUsageError(`--kind must be chat or embedding, got "${kind}".`);
      await upsertModel(ctx.db, ctx.actor, {
        id: need(flags, "id"),
        kind,
        family: flags.family ?? "",
        contextLength: number(flags, "context"),
        inputPricePerMTokens: String(number(flags, "input-price", 0)),
        outputPricePerMTokens: String(number(flags, "output-price", 0)),
      });
      await invalidate(ctx, [routingCacheKey(ctx.redisPrefix)]);
      return;
    }
    case "node add": {
      const node = await upsertNode(ctx.db, ctx.actor, {
        id: need(flags, "id"),
        regionId: need(flags, "region"),
        url: need(flags, "url"),
        models: list(need(flags, "models")) ?? [],
      });
      await invalidate(ctx, [routingCacheKey(ctx.redisPrefix)]);
      ctx.warn(`Node ${node.id} registered. Give this secret to its backplane as BACKPLANE_SECRET:`);
      ctx.print(await ctx.nodeSecret(node.id, node.secretVersion));
      return;
    }
    case "node secret": {
      const id = need(flags, "id");
      if (!/^[a-z0-9][a-z0-9._-]{0,62}$/.test(id)) throw new AdminUsageError("--id must be 1-63 lowercase letters, digits, '.', '_' or '-'.");
      const [node] = await ctx.db.select().from(nodes).where(eq(nodes.id, id));
      // A node that is not registered yet signs with secret version 1 and registers itself with its first heartbeat.
      if (!node) ctx.warn(`Node ${id} is not registered yet: it registers itself with its first heartbeat. Its secret:`);
      ctx.print(await ctx.nodeSecret(id, node?.secretVersion ?? 1));
      return;
    }
    default:
      throw new AdminUsageError(`Unknown command "${command.trim()}".\n\n${ADMIN_HELP}`);
  }
}
