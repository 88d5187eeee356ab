/** `tenant …`, `env …` and `key …`: tenancy through the admin API. */
import type { ApiKeyJson, CreatedApiKeyJson, EnvironmentJson, TenantJson } from "../src/admin/wire.ts";
import { cell, fields } from "./format.ts";
import { AdminUsageError, arg, flag, intFlag, list, listFlag, need, output, show, type Command, type CommandContext } from "./context.ts";
import { regionOverridesFlag, strategyFlag } from "./fleet.ts";

const enc = encodeURIComponent;

/** Prints a created resource's id on stdout (for scripts) and what was created on stderr. */
function created(ctx: CommandContext, what: string, body: { id: string } & object): void {
  output(ctx, body, () => {
    ctx.warn(`Created ${what}:\n${fields({ ...body })}`);
    ctx.print(body.id);
  });
}

/** Prints a new key once on stdout, its metadata on stderr. */
function newKey(ctx: CommandContext, body: CreatedApiKeyJson, note: string): void {
  output(ctx, body, () => {
    const { key, ...metadata } = body;
    ctx.warn(`${fields(metadata)}\n\n${note} This is the only time the full key is shown:`);
    ctx.print(key);
  });
}

async function deleted(ctx: CommandContext, what: string, path: string): Promise<void> {
  const body = await ctx.api().request<object>("DELETE", path);
  output(ctx, body, () => ctx.print(`Deleted ${what}.`));
}

const tenantRow = (t: TenantJson) => [t.id, t.name, t.plan, t.status, t.created_at];
const envRow = (e: EnvironmentJson) => [e.id, e.tenant_id, e.name, e.pinned_region, e.created_at];
const keyRow = (k: ApiKeyJson) => [k.id, k.prefix, k.name, k.environment_id, k.status, k.scopes, k.allowed_models ?? "all", k.expires_at];

/** The region flag: a region id, or `none` to unpin. */
function region(ctx: CommandContext): string | null | undefined {
  const value = flag(ctx, "region");
  return value === "none" ? null : value;
}

/** `--audit off|metadata|full` of env commands: the environment's conversation audit (docs/audit.md). */
function auditFlag(ctx: CommandContext): EnvironmentJson["audit_mode"] | undefined {
  const value = flag(ctx, "audit");
  if (value === undefined) return undefined;
  if (value === "off" || value === "metadata" || value === "full") return value;
  throw new AdminUsageError(`--audit must be off, metadata or full, got "${value}".`);
}

/** `--cache on|off` of env commands: the environment's response and embeddings caches (docs/caching.md). */
function cacheFlag(ctx: CommandContext): boolean | undefined {
  const value = flag(ctx, "cache");
  if (value === undefined) return undefined;
  if (value === "on" || value === "off") return value === "on";
  throw new AdminUsageError(`--cache must be on or off, got "${value}".`);
}

/** `--priority interactive|standard|batch|none` of env and key commands: the scheduling class (docs/priority.md); none clears it. */
function priorityFlag(ctx: CommandContext): EnvironmentJson["priority_class"] | undefined {
  const value = flag(ctx, "priority");
  if (value === undefined) return undefined;
  if (value === "none") return null;
  if (value === "interactive" || value === "standard" || value === "batch") return value;
  throw new AdminUsageError(`--priority must be interactive, standard, batch or none, got "${value}".`);
}

/** Tenancy commands. */
export const tenancyCommands: Record<string, Command> = {
  "tenant create": async (ctx) => {
    const input = { name: need(ctx, "name"), plan: flag(ctx, "plan") };
    created(ctx, "tenant", await ctx.api().request<TenantJson>("POST", "/tenants", input));
  },
  "tenant list": (ctx) => list(ctx, "/tenants", ["ID", "NAME", "PLAN", "STATUS", "CREATED"], tenantRow),
  "tenant show": async (ctx) => show(ctx, await ctx.api().request<TenantJson>("GET", `/tenants/${enc(arg(ctx, 0, "the tenant id"))}`)),
  "tenant update": async (ctx) => {
    const id = arg(ctx, 0, "the tenant id");
    const change = { name: flag(ctx, "name"), plan: flag(ctx, "plan"), status: flag(ctx, "status") };
    if (Object.values(change).every((v) => v === undefined)) throw new AdminUsageError("Nothing to update: give --name, --plan or --status.");
    show(ctx, await ctx.api().request<TenantJson>("PATCH", `/tenants/${enc(id)}`, change));
  },
  "tenant suspend": async (ctx) => show(ctx, await ctx.api().request<TenantJson>("POST", `/tenants/${enc(arg(ctx, 0, "the tenant id"))}/suspend`)),
  "tenant resume": async (ctx) => show(ctx, await ctx.api().request<TenantJson>("POST", `/tenants/${enc(arg(ctx, 0, "the tenant id"))}/resume`)),
  "tenant delete": (ctx) => {
    const id = arg(ctx, 0, "the tenant id");
    return deleted(ctx, `tenant ${id} with its environments and keys`, `/tenants/${enc(id)}`);
  },

  "env create": async (ctx) => {
    const input = {
      tenant_id: need(ctx, "tenant"),
      name: need(ctx, "name"),
      pinned_region: region(ctx),
      routing_strategy: strategyFlag(ctx),
      region_overrides: regionOverridesFlag(ctx),
      audit_mode: auditFlag(ctx),
      cache_enabled: cacheFlag(ctx),
      priority_class: priorityFlag(ctx),
    };
    created(ctx, "environment", await ctx.api().request<EnvironmentJson>("POST", "/environments", input));
  },
  "env list": (ctx) => {
    const tenant = flag(ctx, "tenant");
    return list(ctx, tenant ? `/environments?tenant_id=${enc(tenant)}` : "/environments", ["ID", "TENANT", "NAME", "REGION", "CREATED"], envRow);
  },
  "env show": async (ctx) => show(ctx, await ctx.api().request<EnvironmentJson>("GET", `/environments/${enc(arg(ctx, 0, "the environment id"))}`)),
  "env update": async (ctx) => {
    const id = arg(ctx, 0, "the environment id");
    const change = { name: flag(ctx, "name"), pinned_region: region(ctx), routing_strategy: strategyFlag(ctx), region_overrides: regionOverridesFlag(ctx), audit_mode: auditFlag(ctx), cache_enabled: cacheFlag(ctx), priority_class: priorityFlag(ctx) };
    if (Object.values(change).every((v) => v === undefined)) {
      throw new AdminUsageError("Nothing to update: give --name, --region (none to unpin), --strategy, --region-overrides (none to clear), --audit, --cache or --priority.");
    }
    show(ctx, await ctx.api().request<EnvironmentJson>("PATCH", `/environments/${enc(id)}`, change));
  },
  "env delete": (ctx) => {
    const id = arg(ctx, 0, "the environment id");
    return deleted(ctx, `environment ${id} with its keys`, `/environments/${enc(id)}`);
  },

  "key create": async (ctx) => {
    const environmentId = need(ctx, "env");
    const name = need(ctx, "name");
    const tenant = flag(ctx, "tenant");
    const expires = flag(ctx, "expires");
    if (expires !== undefined && Number.isNaN(Date.parse(expires))) throw new AdminUsageError(`--expires must be an ISO date, got "${expires}".`);
    const api = ctx.api();
    // --tenant is optional (the environment decides); when given it must match, to catch mix-ups.
    if (tenant !== undefined) {
      const env = await api.request<EnvironmentJson>("GET", `/environments/${enc(environmentId)}`);
      if (env.tenant_id !== tenant) throw new AdminUsageError(`Environment ${environmentId} belongs to tenant ${env.tenant_id}, not ${tenant}.`);
    }
    const body = await api.request<CreatedApiKeyJson>("POST", "/keys", {
      environment_id: environmentId,
      name,
      scopes: listFlag(ctx, "scopes"),
      allowed_models: listFlag(ctx, "models"),
      expires_at: expires === undefined ? undefined : new Date(expires).toISOString(),
      priority_class: priorityFlag(ctx),
    });
    newKey(ctx, body, `Created key ${body.id} (${body.prefix}…).`);
  },
  "key list": (ctx) => {
    const params = new URLSearchParams();
    const env = flag(ctx, "env");
    const tenant = flag(ctx, "tenant");
    if (env) params.set("environment_id", env);
    if (tenant) params.set("tenant_id", tenant);
    const path = params.size > 0 ? `/keys?${params.toString()}` : "/keys";
    return list(ctx, path, ["ID", "PREFIX", "NAME", "ENV", "STATUS", "SCOPES", "MODELS", "EXPIRES"], keyRow);
  },
  "key show": async (ctx) => show(ctx, await ctx.api().request<ApiKeyJson>("GET", `/keys/${enc(arg(ctx, 0, "the key id"))}`)),
  "key rotate": async (ctx) => {
    const id = arg(ctx, 0, "the key id");
    const overlap = intFlag(ctx, "overlap");
    const body = await ctx.api().request<CreatedApiKeyJson & { rotated_from: ApiKeyJson }>("POST", `/keys/${enc(id)}/rotate`, { overlap_seconds: overlap });
    const { rotated_from: old, ...fresh } = body;
    newKey(ctx, { ...fresh, ...(ctx.flags.json === true ? { rotated_from: old } : {}) }, `Rotated ${old.id}: it keeps working until ${cell(old.expires_at)}. New key ${fresh.id} (${fresh.prefix}…).`);
  },
  "key update": async (ctx) => {
    const id = arg(ctx, 0, "the key id");
    const change = { priority_class: priorityFlag(ctx) };
    if (change.priority_class === undefined) throw new AdminUsageError("Nothing to update: give --priority interactive|standard|batch|none.");
    show(ctx, await ctx.api().request<ApiKeyJson>("PATCH", `/keys/${enc(id)}`, change));
  },
  "key revoke": async (ctx) => show(ctx, await ctx.api().request<ApiKeyJson>("POST", `/keys/${enc(arg(ctx, 0, "the key id"))}/revoke`)),
};
