/** `limits …`, `budget …`, `credit …`, `counters` and `audit`: through the admin API. */
import type { AuditJson, BudgetJson, CountersJson, CreditGrantJson, LimitsJson } from "../src/admin/wire.ts";
import { cell, table } from "./format.ts";
import { AdminUsageError, arg, flag, intFlag, list, need, output, show, type Command, type CommandContext } from "./context.ts";

const enc = encodeURIComponent;
const SCOPES = ["global", "tenant", "environment", "key"];

/** `SCOPE ID` positionals (`env` accepted for environment; global's id defaults to "global"). */
function scopeArgs(ctx: CommandContext): { scope: string; id: string } {
  let scope = arg(ctx, 0, "the scope (global, tenant, environment or key)");
  if (scope === "env") scope = "environment";
  if (!SCOPES.includes(scope)) throw new AdminUsageError(`The scope must be global, tenant, environment or key, got "${scope}".`);
  const id = scope === "global" ? (ctx.args[1] ?? "global") : arg(ctx, 1, `the ${scope} id`);
  return { scope, id };
}

/** `scope/id` for a URL path. */
function scopePath(ctx: CommandContext): string {
  const { scope, id } = scopeArgs(ctx);
  return `${scope}/${enc(id)}`;
}

/** A limit flag: a whole number, `none` (back to the default), or absent (unchanged). */
function limitFlag(ctx: CommandContext, name: string): number | null | undefined {
  const raw = flag(ctx, name);
  if (raw === "none" || raw === "default") return null;
  return intFlag(ctx, name);
}

function printLimits(ctx: CommandContext, body: LimitsJson): void {
  output(ctx, body, () => {
    const whose = body.scope === "global" ? "Global limits" : `Limits of ${body.scope} ${body.scope_id}`;
    ctx.print(`${whose}${body.updated_at ? ` (overridden ${cell(body.updated_at)})` : ""}:`);
    const rows = (["rpm", "tpm", "concurrency"] as const).map((k) => [k, body.defaults[k] ?? "unlimited", body.override?.[k] ?? "-", body.effective[k] ?? "unlimited"]);
    ctx.print(table(["LIMIT", "DEFAULT", "OVERRIDE", "EFFECTIVE"], rows));
  });
}

const budgetRow = (b: BudgetJson) => [b.id, b.scope, b.scope_id, b.kind, b.period, b.amount];
const usd = (micros: number) => `$${(micros / 1_000_000).toFixed(6)}`;
const creditRow = (g: CreditGrantJson) => [g.id, g.tenant_id, g.kind, usd(g.amount_micros), usd(g.remaining_micros), g.expires_at ?? "never", g.note];
const auditRow = (a: AuditJson) => [a.at, a.actor, a.action, `${a.target_type}:${a.target_id}`, a.tenant_id, a.success ? "ok" : "failed"];

/** Limit, budget, counter and audit commands. */
export const quotaCommands: Record<string, Command> = {
  "limits set": async (ctx) => {
    const path = scopePath(ctx);
    const body = { rpm: limitFlag(ctx, "rpm"), tpm: limitFlag(ctx, "tpm"), concurrency: limitFlag(ctx, "concurrency") };
    if (Object.values(body).every((v) => v === undefined)) throw new AdminUsageError("Nothing to set: give --rpm, --tpm or --concurrency (a number, or none for the default).");
    printLimits(ctx, await ctx.api().request<LimitsJson>("PUT", `/limits/${path}`, body));
  },
  "limits show": async (ctx) => printLimits(ctx, await ctx.api().request<LimitsJson>("GET", `/limits/${scopePath(ctx)}`)),
  "limits clear": async (ctx) => printLimits(ctx, await ctx.api().request<LimitsJson>("DELETE", `/limits/${scopePath(ctx)}`)),

  "budget add": async (ctx) => {
    const { scope, id } = scopeArgs(ctx);
    const amount = intFlag(ctx, "amount");
    if (amount === undefined) throw new AdminUsageError("Missing --amount. Run with --help for usage.");
    const input = { scope, scope_id: id, kind: need(ctx, "kind"), period: need(ctx, "period"), amount };
    const body = await ctx.api().request<BudgetJson>("POST", "/budgets", input);
    output(ctx, body, () => {
      ctx.warn(`Created budget: ${body.kind} ${body.period === "total" ? "in total" : `per ${body.period}`} ≤ ${body.amount} for ${body.scope} ${body.scope_id}.`);
      ctx.print(body.id);
    });
  },
  "credit grant": async (ctx) => {
    const amount = Number(need(ctx, "usd"));
    if (!Number.isFinite(amount) || amount <= 0) throw new AdminUsageError("--usd must be a positive amount of dollars, e.g. --usd 5 or --usd 0.25.");
    const expires = flag(ctx, "expires");
    const input = { tenant_id: need(ctx, "tenant"), kind: flag(ctx, "kind") ?? "promotion", amount_usd: amount, expires_at: expires ?? null, note: flag(ctx, "note") ?? "" };
    const body = await ctx.api().request<CreditGrantJson>("POST", "/credits", input);
    output(ctx, body, () => {
      ctx.warn(`Granted ${usd(body.amount_micros)} of ${body.kind} credit to tenant ${body.tenant_id}${body.expires_at ? `, usable until ${body.expires_at}` : ""}.`);
      ctx.print(body.id);
    });
  },
  "credit list": (ctx) => {
    const params = new URLSearchParams();
    const tenant = flag(ctx, "tenant");
    if (tenant !== undefined) params.set("tenant_id", tenant);
    const active = flag(ctx, "active");
    if (active !== undefined) params.set("active", active);
    const qs = params.size > 0 ? `?${params.toString()}` : "";
    return list(ctx, `/credits${qs}`, ["ID", "TENANT", "KIND", "AMOUNT", "REMAINING", "EXPIRES", "NOTE"], creditRow);
  },
  "credit void": async (ctx) => show(ctx, await ctx.api().request<CreditGrantJson>("POST", `/credits/${enc(arg(ctx, 0, "the credit grant id"))}/void`)),
  "budget list": (ctx) => {
    const entity = ctx.args.length > 0 ? scopeArgs(ctx) : null;
    const path = entity ? `/budgets?${new URLSearchParams({ scope: entity.scope, scope_id: entity.id }).toString()}` : "/budgets";
    return list(ctx, path, ["ID", "SCOPE", "SCOPE_ID", "KIND", "PERIOD", "AMOUNT"], budgetRow);
  },
  "budget update": async (ctx) => {
    const id = arg(ctx, 0, "the budget id");
    const amount = intFlag(ctx, "amount");
    if (amount === undefined) throw new AdminUsageError("Missing --amount. Run with --help for usage.");
    show(ctx, await ctx.api().request<BudgetJson>("PATCH", `/budgets/${enc(id)}`, { amount }));
  },
  "budget delete": async (ctx) => {
    const id = arg(ctx, 0, "the budget id");
    const body = await ctx.api().request<object>("DELETE", `/budgets/${enc(id)}`);
    output(ctx, body, () => ctx.print(`Deleted budget ${id}.`));
  },

  counters: async (ctx) => {
    const body = await ctx.api().request<CountersJson>("GET", `/counters/${scopePath(ctx)}`);
    output(ctx, body, () => {
      if (body.budgets.length === 0) ctx.print(`No budgets on ${body.scope} ${body.scope_id}.`);
      else {
        const rows = body.budgets.map((b) => [b.budget.id, b.budget.kind, b.budget.period, b.used, b.budget.amount, b.remaining]);
        ctx.print(table(["BUDGET", "KIND", "PERIOD", "USED", "AMOUNT", "REMAINING"], rows));
      }
      ctx.print("");
      printLimits(ctx, body.limits);
    });
  },
  audit: (ctx) => {
    const params = new URLSearchParams();
    const target = flag(ctx, "target");
    const tenant = flag(ctx, "tenant");
    if (target) params.set("target_id", target);
    if (tenant) params.set("tenant_id", tenant);
    return list(ctx, params.size > 0 ? `/audit?${params.toString()}` : "/audit", ["AT", "ACTOR", "ACTION", "TARGET", "TENANT", "RESULT"], auditRow);
  },
};
