/** `autoscaling list|show|set|delete`: autoscaling policies through the admin API (docs/autoscaling.md). */
import type { PolicyJson, PolicyStatusJson } from "../src/autoscaling/wire.ts";
import { fields, table } from "./format.ts";
import { AdminUsageError, arg, flag, output, show, type Command, type CommandContext } from "./context.ts";

const enc = encodeURIComponent;

function policyPath(ctx: CommandContext): string {
  return `/autoscaling/${enc(arg(ctx, 0, "the model id"))}/${enc(arg(ctx, 1, "the region"))}`;
}

/** `--idle 15m`, `--idle 900s` or `--idle 900` (seconds); undefined when left out. */
function seconds(ctx: CommandContext, name: string): number | undefined {
  const raw = flag(ctx, name);
  if (raw === undefined) return undefined;
  const match = /^(\d+)(s|m|h)?$/.exec(raw.trim());
  if (!match) throw new AdminUsageError(`--${name} must be a duration such as 90s, 15m or 1h, got "${raw}".`);
  return Number(match[1]) * (match[2] === "h" ? 3600 : match[2] === "m" ? 60 : 1);
}

function whole(ctx: CommandContext, name: string): number | undefined {
  const raw = flag(ctx, name);
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw)) throw new AdminUsageError(`--${name} must be a whole number, got "${raw}".`);
  return Number(raw);
}

function decimal(ctx: CommandContext, name: string): number | undefined {
  const raw = flag(ctx, name);
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(value)) throw new AdminUsageError(`--${name} must be a number, got "${raw}".`);
  return value;
}

/** `--spot`, `--spot true` or `--spot false`. */
function spotFlag(ctx: CommandContext): boolean | undefined {
  const raw = ctx.flags.spot;
  if (raw === undefined || raw === false) return raw === false ? false : undefined;
  if (raw === true || raw === "true") return true;
  if (raw === "false") return false;
  throw new AdminUsageError(`--spot takes true or false, got "${raw}".`);
}

function launchText(p: PolicyJson): string {
  return `${p.provider} ${p.gpu}${p.spot ? " spot" : ""}`;
}

export const autoscalingCommands: Record<string, Command> = {
  "autoscaling list": async (ctx) => {
    const body = await ctx.api().request<{ data: PolicyStatusJson[] }>("GET", "/autoscaling");
    output(ctx, body, () => {
      if (body.data.length === 0) return ctx.print("(no policies)");
      ctx.print(
        table(
          ["MODEL", "REGION", "MODE", "MIN", "MAX", "TARGET", "SCALE UP AFTER", "IDLE", "LAUNCHES", "NOW"],
          body.data.map((p) => [p.model, p.region, p.mode, p.min_nodes, p.max_nodes, p.target_queue_per_node, `${p.scale_up_after_seconds} s`, `${p.idle_seconds} s`, launchText(p), p.now.decisions.map((d) => d.action).join(", ")]),
        ),
      );
      for (const p of body.data) for (const d of p.now.decisions) ctx.print(`${p.model} ${p.region}: ${d.action}: ${d.reason}`);
    });
  },
  "autoscaling show": async (ctx) => {
    const body = await ctx.api().request<PolicyStatusJson>("GET", policyPath(ctx));
    output(ctx, body, () => {
      const { last_decisions: last, now, ...policy } = body;
      ctx.print(fields({ ...policy }));
      ctx.print("\nNow (nothing done):");
      for (const d of now.decisions) ctx.print(`  ${d.action}: ${d.reason}`);
      ctx.print("\nLast decisions:");
      ctx.print(last.length === 0 ? "  (none)" : table(["AT", "ACTION", "DRY RUN", "NODE", "LAUNCH", "REASON"], last.map((d) => [d.at, d.action, d.dry_run, d.node_id ?? "", d.launch_id ?? "", d.reason])));
    });
  },
  "autoscaling set": async (ctx) => {
    const path = policyPath(ctx);
    const body: Record<string, unknown> = {};
    const put = (key: string, value: unknown): void => {
      if (value !== undefined) body[key] = value;
    };
    put("min_nodes", whole(ctx, "min"));
    put("max_nodes", whole(ctx, "max"));
    put("target_queue_per_node", decimal(ctx, "target"));
    put("scale_up_after_seconds", seconds(ctx, "scale-up-after"));
    put("idle_seconds", seconds(ctx, "idle"));
    put("provider", flag(ctx, "provider"));
    put("gpu", flag(ctx, "gpu"));
    put("spot", spotFlag(ctx));
    const mode = flag(ctx, "mode");
    if (mode !== undefined && mode !== "dry_run" && mode !== "on") throw new AdminUsageError(`--mode is dry_run or on, got "${mode}".`);
    put("mode", mode);
    if (Object.keys(body).length === 0) throw new AdminUsageError("Nothing to set: give --min, --max, --target, --scale-up-after, --idle, --provider, --gpu, --spot or --mode.");
    show(ctx, await ctx.api().request<PolicyJson>("PUT", path, body));
  },
  "autoscaling delete": async (ctx) => {
    show(ctx, await ctx.api().request<Record<string, unknown>>("DELETE", policyPath(ctx)));
  },
};
