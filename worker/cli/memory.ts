/** `memory cool` and `memory trails`: the memory trails (docs/memory.md), through the admin API. */
import type { AdminTrailJson, CoolingJson } from "../src/memory/wire.ts";
import { flag, list, output, type Command } from "./context.ts";

/** The memory commands. */
export const memoryCommands: Record<string, Command> = {
  "memory cool": async (ctx) => {
    const body = await ctx.api().request<CoolingJson>("POST", "/memory/cool");
    output(ctx, body, () =>
      ctx.print(
        `Cooled ${body.cooled} trails, removed ${body.removed} (cold below ${body.cold_temperature}, no breadcrumb for ${body.retention_days} days; half-life ${body.half_life_hours} h)` +
          (body.removed_trail_ids.length > 0 ? `\nRemoved: ${body.removed_trail_ids.join(", ")}` : ""),
      ),
    );
  },
  "memory trails": (ctx) => {
    const tenant = flag(ctx, "tenant");
    const path = tenant === undefined ? "/memory/trails" : `/memory/trails?tenant_id=${encodeURIComponent(tenant)}`;
    return list<AdminTrailJson>(ctx, path, ["ID", "TENANT", "SOURCE", "TARGET", "TEMPERATURE", "BREADCRUMBS", "LAST_WARMED"], (t) => [
      t.id,
      t.tenant_id,
      t.source,
      t.target ?? "-",
      t.temperature.toFixed(2),
      t.breadcrumbs,
      t.last_warmed_at,
    ]);
  },
};
