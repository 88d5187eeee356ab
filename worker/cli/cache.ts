/** `cache show|purge TENANT`: a tenant's share of the response and embeddings caches (docs/caching.md), through the admin API. */
import type { TenantCacheJson, TenantCachePurgeJson } from "../src/cache/wire.ts";
import { arg, output, show, type Command } from "./context.ts";

/** The cache commands. */
export const cacheCommands: Record<string, Command> = {
  "cache show": async (ctx) => {
    const tenant = arg(ctx, 0, "the tenant id");
    const body = await ctx.api().request<TenantCacheJson>("GET", `/cache/${encodeURIComponent(tenant)}`);
    output(ctx, body, () => ctx.print(`${body.tenant_id}: ${body.entries} entries, ${body.bytes} of ${body.max_bytes} bytes`));
  },
  "cache purge": async (ctx) => show(ctx, await ctx.api().request<TenantCachePurgeJson>("DELETE", `/cache/${encodeURIComponent(arg(ctx, 0, "the tenant id"))}`)),
};
