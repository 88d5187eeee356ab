/** `council list|show|set|remove|votes`: tenants' councils and their votes through the admin API (docs/council.md). */
import { readFileSync } from "node:fs";
import type { CouncilJson } from "../src/council/wire.ts";
import type { StoredVoteJson } from "../src/council/wire.ts";
import { table } from "./format.ts";
import { AdminUsageError, arg, flag, list, output, show, type Command } from "./context.ts";

const enc = encodeURIComponent;

export const councilCommands: Record<string, Command> = {
  "council list": async (ctx) => {
    const tenant = arg(ctx, 0, "the tenant id");
    const body = await ctx.api().request<{ data: CouncilJson[] }>("GET", `/councils/${enc(tenant)}`);
    output(ctx, body, () =>
      ctx.print(
        table(
          ["NAME", "MODEL", "SPECIALISTS", "SYNTHESISER", "DEADLINE", "BREADCRUMBS", "KIND"],
          body.data.map((c) => [c.name, c.model, c.specialists.map((s) => s.name).join(","), c.synthesiser, `${c.deadline_ms / 1000} s`, c.leave_breadcrumbs ? "yes" : "no", c.builtin ? "built-in" : "tenant"]),
        ),
      ),
    );
  },
  "council show": async (ctx) => {
    const tenant = arg(ctx, 0, "the tenant id");
    const name = ctx.args[1] ?? "default";
    show(ctx, await ctx.api().request<CouncilJson>("GET", `/councils/${enc(tenant)}/${enc(name)}`));
  },
  "council set": async (ctx) => {
    const tenant = arg(ctx, 0, "the tenant id");
    const name = ctx.args[1];
    if (!name) throw new AdminUsageError("Missing the council's name: council set TENANT NAME --file council.json");
    const file = flag(ctx, "file");
    if (!file) throw new AdminUsageError("Missing --file: a JSON document {specialists, synthesiser, deadline_ms?, critical_tags?, leave_breadcrumbs?} (docs/council.md).");
    let body: unknown;
    try {
      body = JSON.parse(readFileSync(file, "utf8"));
    } catch (err) {
      throw new AdminUsageError(`Cannot read ${file} as JSON: ${err instanceof Error ? err.message : String(err)}`);
    }
    show(ctx, await ctx.api().request<CouncilJson>("PUT", `/councils/${enc(tenant)}/${enc(name)}`, body));
  },
  "council remove": async (ctx) => {
    const tenant = arg(ctx, 0, "the tenant id");
    const name = ctx.args[1];
    if (!name) throw new AdminUsageError("Missing the council's name: council remove TENANT NAME");
    show(ctx, await ctx.api().request<Record<string, unknown>>("DELETE", `/councils/${enc(tenant)}/${enc(name)}`));
  },
  "council votes": async (ctx) => {
    const params = new URLSearchParams();
    const tenant = flag(ctx, "tenant");
    const council = flag(ctx, "council");
    if (tenant) params.set("tenant_id", tenant);
    if (council) params.set("council", council);
    const query = params.toString();
    await list<StoredVoteJson>(ctx, `/council/votes${query ? `?${query}` : ""}`, ["ID", "AT", "COUNCIL", "RECOMMENDATION", "CONFIDENCE", "PARTIAL", "QUESTION"], (v) => [
      v.id,
      v.timestamp,
      v.council,
      v.recommendation,
      String(v.confidence),
      v.partial ? "yes" : "no",
      v.question.length > 60 ? `${v.question.slice(0, 57)}…` : v.question,
    ]);
  },
};
