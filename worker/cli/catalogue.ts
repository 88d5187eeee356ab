/** `model list|set|remove|export|apply` (the catalogue through the admin API) and `usage` (usage reports). */
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { catalogueYaml, type CataloguePlan } from "../src/routing/catalogue-wire.ts";
import { table } from "./format.ts";
import { AdminUsageError, arg, flag, listFlag, output, show, type Command, type CommandContext } from "./context.ts";
import { strategyFlag } from "./fleet.ts";

interface CatalogueModel {
  id: string;
  kind: string;
  family: string;
  context_length: number;
  input_price_per_m_tokens: number;
  output_price_per_m_tokens: number;
  cached_input_price_per_m_tokens: number | null;
  audio_price_per_minute: number | null;
  active: boolean;
  routing_strategy: string | null;
  base_model: string | null;
  adapter_source: string | null;
  aliases: string[];
  cache_hit_price_factor: number;
}

interface UsageReport {
  start: string;
  end: string;
  data: (Record<string, string | number | undefined> & { period_start: string; requests: number; prompt_tokens: number; completion_tokens: number; cost_usd: number })[];
  totals: { requests: number; prompt_tokens: number; completion_tokens: number; total_tokens: number; cost_usd: number };
}

function price(ctx: CommandContext, name: string, unit = "per million tokens"): number | undefined {
  const raw = flag(ctx, name);
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) throw new AdminUsageError(`--${name} must be a price in USD ${unit}, got "${raw}".`);
  return value;
}

/** `--cache-hit-factor F`: a cache hit's share of the GPU price, 0 (free) to 1 (docs/caching.md). */
function cacheFactorFlag(ctx: CommandContext): number | undefined {
  const raw = flag(ctx, "cache-hit-factor");
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(value) || value < 0 || value > 1) throw new AdminUsageError(`--cache-hit-factor must be a number from 0 (hits free) to 1 (full price), got "${raw}".`);
  return value;
}

/** A flag whose value "none" clears the field (null); left out keeps it (undefined). */
function noneFlag(ctx: CommandContext, name: string): string | null | undefined {
  const value = flag(ctx, name);
  return value === "none" ? null : value;
}

/** `--alias a --alias b` or `--alias a,b`: the model's whole alias list; `--alias none` clears it; left out keeps it. */
function aliasesFlag(ctx: CommandContext): string[] | undefined {
  const list = listFlag(ctx, "alias");
  if (list === undefined) return undefined;
  return list.length === 1 && list[0] === "none" ? [] : list;
}

/** The plan of a catalogue document, one line per kind of change. */
function printPlan(ctx: CommandContext, plan: CataloguePlan): void {
  ctx.print(plan.dry_run ? "Dry run: nothing was written (add --apply to apply this plan)." : "Applied:");
  const ids = (list: string[]) => (list.length === 0 ? "-" : list.join(", "));
  ctx.print(`  create      ${ids(plan.create)}`);
  if (plan.update.length === 0) ctx.print("  update      -");
  for (const u of plan.update) {
    const changes = Object.entries(u.changes).map(([field, c]) => `${field} ${JSON.stringify(c.from)} -> ${JSON.stringify(c.to)}`);
    ctx.print(`  update      ${u.id}: ${changes.join(", ")}`);
  }
  ctx.print(`  deactivate  ${ids(plan.deactivate)}`);
  ctx.print(`  unchanged   ${plan.unchanged.length} model${plan.unchanged.length === 1 ? "" : "s"}`);
}

/** Catalogue and usage commands. */
export const catalogueCommands: Record<string, Command> = {
  "model list": async (ctx) => {
    const body = await ctx.api().request<{ data: CatalogueModel[] }>("GET", "/models");
    output(ctx, body, () =>
      ctx.print(
        table(
          ["ID", "KIND", "CONTEXT", "IN $/M", "OUT $/M", "CACHED $/M", "AUDIO $/MIN", "ACTIVE", "STRATEGY", "BASE", "ALIASES"],
          body.data.map((m) => [
            m.id,
            m.kind,
            m.context_length,
            m.input_price_per_m_tokens,
            m.output_price_per_m_tokens,
            m.cached_input_price_per_m_tokens ?? "-",
            m.audio_price_per_minute ?? "-",
            m.active ? "yes" : "no",
            m.routing_strategy,
            m.base_model,
            m.aliases.join(",") || "-",
          ]),
        ),
      ),
    );
  },
  "model set": async (ctx) => {
    const id = arg(ctx, 0, "the model id");
    const active = flag(ctx, "active");
    if (active !== undefined && active !== "true" && active !== "false") throw new AdminUsageError(`--active must be true or false, got "${active}".`);
    const context = flag(ctx, "context");
    const body = {
      // Required when creating a model (the API says so), except an adapter (--base-model), which takes its base's;
      // changing a model (its aliases, say) needs only the fields that change.
      context_length: context === undefined ? undefined : Number(context),
      kind: flag(ctx, "kind"),
      family: flag(ctx, "family"),
      input_price_per_m_tokens: price(ctx, "input-price"),
      output_price_per_m_tokens: price(ctx, "output-price"),
      cached_input_price_per_m_tokens: price(ctx, "cached-price"),
      audio_price_per_minute: flag(ctx, "audio-price") === "none" ? null : price(ctx, "audio-price", "per minute of audio"),
      active: active === undefined ? undefined : active === "true",
      routing_strategy: strategyFlag(ctx),
      base_model: noneFlag(ctx, "base-model"),
      adapter_source: noneFlag(ctx, "adapter-source"),
      aliases: aliasesFlag(ctx),
      cache_hit_price_factor: cacheFactorFlag(ctx),
    };
    show(ctx, await ctx.api().request<CatalogueModel>("PUT", `/models/${encodeURIComponent(id)}`, body));
  },
  // The same document as GET /admin/models/configured, rendered from the JSON list (the API client speaks JSON).
  "model export": async (ctx) => {
    const body = await ctx.api().request<{ data: CatalogueModel[] }>("GET", "/models");
    ctx.print(catalogueYaml(body.data).trimEnd());
  },
  // The document goes as JSON (a YAML subset), so the file's YAML syntax is checked here, with line numbers.
  "model apply": async (ctx) => {
    const file = arg(ctx, 0, "the catalogue file (as `model export` prints it)");
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      throw new AdminUsageError(`Cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`);
    }
    let document: unknown;
    try {
      document = parseYaml(text, { maxAliasCount: 100 }) as unknown;
    } catch (err) {
      throw new AdminUsageError(`${file} is not valid YAML: ${err instanceof Error ? err.message : String(err)}`);
    }
    const path = ctx.flags.apply === true ? "/models/configured?apply=true" : "/models/configured";
    const plan = await ctx.api().request<CataloguePlan>("PUT", path, document ?? {});
    output(ctx, plan, () => printPlan(ctx, plan));
  },
  "model remove": async (ctx) => show(ctx, await ctx.api().request<CatalogueModel>("DELETE", `/models/${encodeURIComponent(arg(ctx, 0, "the model id"))}`)),

  usage: async (ctx) => {
    const params = new URLSearchParams();
    for (const [name, param] of [["tenant", "tenant_id"], ["start", "start"], ["end", "end"], ["bucket", "bucket"], ["group-by", "group_by"]] as const) {
      const value = flag(ctx, name);
      if (value !== undefined) params.set(param, value);
    }
    const body = await ctx.api().request<UsageReport>("GET", `/usage${params.size > 0 ? `?${params.toString()}` : ""}`);
    output(ctx, body, () => {
      const dims = ["tenant_id", "model", "environment_id", "api_key_id"].filter((d) => body.data.some((r) => r[d] !== undefined));
      ctx.print(`Usage from ${body.start} to ${body.end}:`);
      ctx.print(
        body.data.length === 0
          ? "(none)"
          : table(
              ["PERIOD", ...dims.map((d) => d.replace("_id", "").toUpperCase()), "REQUESTS", "PROMPT", "COMPLETION", "COST $"],
              body.data.map((r) => [r.period_start, ...dims.map((d) => r[d]), r.requests, r.prompt_tokens, r.completion_tokens, r.cost_usd.toFixed(6)]),
            ),
      );
      const t = body.totals;
      ctx.print(`Total: ${t.requests} requests, ${t.prompt_tokens} prompt + ${t.completion_tokens} completion tokens, $${t.cost_usd.toFixed(6)}`);
    });
  },
};
