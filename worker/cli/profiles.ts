/** `profile list|show|set|remove`: agent streaming profiles through the admin API (docs/streaming-profiles.md). */
import type { StreamProfileJson } from "../src/profiles/wire.ts";
import { table } from "./format.ts";
import { AdminUsageError, arg, intFlag, output, show, type Command, type CommandContext } from "./context.ts";


const enc = encodeURIComponent;

/** `--timeout 30s`, `--timeout 1500ms` or `--timeout 30` (seconds) in ms; undefined when left out. */
function durationMs(ctx: CommandContext, name: string): number | undefined {
  const raw = ctx.flags[name];
  if (raw === undefined || raw === false) return undefined;
  const match = typeof raw === "string" ? /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(raw.trim()) : null;
  if (!match) throw new AdminUsageError(`--${name} must be a duration such as 30s or 1500ms, got "${String(raw)}".`);
  const value = Number(match[1]);
  return Math.round(match[2] === "ms" ? value : value * 1000);
}

export const profileCommands: Record<string, Command> = {
  "profile list": async (ctx) => {
    const body = await ctx.api().request<{ data: StreamProfileJson[] }>("GET", "/stream-profiles");
    output(ctx, body, () =>
      ctx.print(
        table(
          ["NAME", "CHUNK TOKENS", "INTERVAL", "BUFFER", "TIMEOUT", "KIND", "ROUTE"],
          body.data.map((p) => [p.name, String(p.chunk_tokens), `${p.interval_ms} ms`, String(p.buffer_tokens), `${p.timeout_ms / 1000} s`, p.builtin ? (p.overridden ? "built-in (changed)" : "built-in") : "operator", p.route]),
        ),
      ),
    );
  },
  "profile show": async (ctx) => {
    show(ctx, await ctx.api().request<StreamProfileJson>("GET", `/stream-profiles/${enc(arg(ctx, 0, "the profile name"))}`));
  },
  "profile set": async (ctx) => {
    const name = arg(ctx, 0, "the profile name");
    const body: Record<string, number> = {};
    const chunk = intFlag(ctx, "chunk-tokens");
    const buffer = intFlag(ctx, "buffer-tokens");
    const interval = durationMs(ctx, "interval");
    const timeout = durationMs(ctx, "timeout");
    if (chunk !== undefined) body.chunk_tokens = chunk;
    if (buffer !== undefined) body.buffer_tokens = buffer;
    if (interval !== undefined) body.interval_ms = interval;
    if (timeout !== undefined) body.timeout_ms = timeout;
    if (Object.keys(body).length === 0) throw new AdminUsageError("Nothing to set: give --chunk-tokens, --buffer-tokens, --interval or --timeout.");
    show(ctx, await ctx.api().request<StreamProfileJson>("PUT", `/stream-profiles/${enc(name)}`, body));
  },
  "profile remove": async (ctx) => {
    show(ctx, await ctx.api().request<Record<string, unknown>>("DELETE", `/stream-profiles/${enc(arg(ctx, 0, "the profile name"))}`));
  },
};
