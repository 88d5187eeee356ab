/** What every admin CLI command gets, and the helpers they share (flags, output, lists). */
import type { ListBody } from "../src/admin/pagination.ts";
import type { AdminApi } from "./client.ts";
import { fields, table } from "./format.ts";
import type { InfraContext } from "./infra.ts";
import type { SkyCli } from "./sky.ts";

/** A mistake in how the CLI was called; printed without a stack trace, exit code 2. */
export class AdminUsageError extends Error {
  override name = "AdminUsageError";
}

/** Flag values as parsed from argv (booleans for --json, --all, --help). */
export type Flags = Record<string, string | boolean | undefined>;

/** Everything an API command needs; built by admin.ts. */
export interface CommandContext {
  /** The admin API client (created on first use: node commands need no token). */
  api(): AdminApi;
  /** The DB-level context of the infrastructure commands (created on first use). */
  infra(): InfraContext;
  /** The `sky` CLI of this host, or null when it is not on PATH (provisioning.ts). */
  sky?: () => SkyCli | null;
  /** Positionals after `noun verb`. */
  args: string[];
  flags: Flags;
  print: (line: string) => void;
  warn: (line: string) => void;
  /** Replaces the current stderr line with `line` (no newline), an empty `line` ending it with one; set only when stderr is a terminal. */
  rewrite?: (line: string) => void;
}

/** A command handler. */
export type Command = (ctx: CommandContext) => Promise<void>;

/** A string flag, or undefined. */
export function flag(ctx: CommandContext, name: string): string | undefined {
  const value = ctx.flags[name];
  if (value === true) throw new AdminUsageError(`--${name} needs a value.`);
  return value === false ? undefined : value;
}

/** A required string flag. */
export function need(ctx: CommandContext, name: string): string {
  const value = flag(ctx, name);
  if (value === undefined || value === "") throw new AdminUsageError(`Missing --${name}. Run with --help for usage.`);
  return value;
}

/** The n-th positional argument (or `--id` for the first), required. */
export function arg(ctx: CommandContext, index: number, what: string): string {
  const value = ctx.args[index] ?? (index === 0 ? flag(ctx, "id") : undefined);
  if (value === undefined || value === "") throw new AdminUsageError(`Missing ${what}. Run with --help for usage.`);
  return value;
}

/** A comma-separated list flag. */
export function listFlag(ctx: CommandContext, name: string): string[] | undefined {
  const value = flag(ctx, name);
  return value === undefined ? undefined : value.split(",").map((s) => s.trim()).filter(Boolean);
}

/** An integer flag. */
export function intFlag(ctx: CommandContext, name: string): number | undefined {
  const raw = flag(ctx, name);
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value)) throw new AdminUsageError(`--${name} must be a whole number, got "${raw}".`);
  return value;
}

/** Prints a JSON body (with --json) or runs `human`. */
export function output(ctx: CommandContext, body: unknown, human: () => void): void {
  if (ctx.flags.json === true) ctx.print(JSON.stringify(body, null, 2));
  else human();
}

/** Prints one resource as a field list (or JSON). */
export function show(ctx: CommandContext, body: object): void {
  output(ctx, body, () => ctx.print(fields({ ...body })));
}

/**
 * Fetches a list (one page, or every page with --all) and prints it as a table; `path` may carry a
 * query already. When more pages remain, says how to get the next one on stderr.
 */
export async function list<T>(ctx: CommandContext, path: string, headers: string[], row: (item: T) => unknown[]): Promise<void> {
  const params = new URLSearchParams();
  const limit = intFlag(ctx, "limit");
  if (limit !== undefined) params.set("limit", String(limit));
  let cursor = flag(ctx, "cursor");
  const items: T[] = [];
  let next: string | null = null;
  for (;;) {
    if (cursor !== undefined) params.set("cursor", cursor);
    const sep = path.includes("?") ? "&" : "?";
    const page: ListBody<T> = await ctx.api().request<ListBody<T>>("GET", params.size > 0 ? `${path}${sep}${params.toString()}` : path);
    items.push(...page.data);
    next = page.next_cursor;
    if (next === null || ctx.flags.all !== true) break;
    cursor = next;
  }
  output(ctx, { object: "list", data: items, next_cursor: next }, () => {
    ctx.print(items.length === 0 ? "(none)" : table(headers, items.map(row)));
    if (next !== null) ctx.warn(`More results: add --cursor ${next} (or --all).`);
  });
}
