import { z } from "zod";
import { ApiError } from "../errors.ts";

/** Page size when `?limit=` is not given. */
export const DEFAULT_PAGE = 50;
/** The largest `?limit=` allowed. */
export const MAX_PAGE = 200;

/** `?limit=` and `?cursor=` of every list endpoint. */
export const pageQuery = {
  limit: z.coerce.number().int().min(1).max(MAX_PAGE).default(DEFAULT_PAGE),
  cursor: z.string().min(1).optional(),
};

/** The list shape of every admin list endpoint. */
export interface ListBody<T> {
  object: "list";
  data: T[];
  next_cursor: string | null;
}

function base64url(text: string): string {
  let binary = "";
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function unbase64url(value: string): string {
  const binary = atob(value.replaceAll("-", "+").replaceAll("_", "/"));
  return new TextDecoder().decode(Uint8Array.from(binary, (ch) => ch.charCodeAt(0)));
}

/** Encodes a position as an opaque cursor (callers must not rely on its content). */
export function encodeCursor(position: Record<string, string>): string {
  return base64url(JSON.stringify(position));
}

/** Decodes a cursor made by `encodeCursor` with the same fields; 400 naming `cursor` otherwise. */
export function decodeCursor<K extends string>(cursor: string | undefined, fields: readonly K[]): Record<K, string> | null {
  if (cursor === undefined) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(unbase64url(cursor));
  } catch {
    parsed = null;
  }
  if (!parsed || typeof parsed !== "object") throw badCursor();
  const out: Partial<Record<K, string>> = {};
  for (const field of fields) {
    const value = (parsed as Record<string, unknown>)[field];
    if (typeof value !== "string") throw badCursor();
    out[field] = value;
  }
  return out as Record<K, string>;
}

function badCursor(): ApiError {
  return new ApiError("invalid_value", "Invalid cursor: pass the next_cursor of the previous page unchanged.", { param: "cursor" });
}

/**
 * Builds a page from rows fetched with `limit + 1` (the extra row only says there is more), with the
 * cursor pointing after the last row returned.
 */
export function page<R, T>(rows: R[], limit: number, present: (row: R) => T, position: (row: R) => Record<string, string>): ListBody<T> {
  const more = rows.length > limit;
  const shown = more ? rows.slice(0, limit) : rows;
  const last = shown.at(-1);
  return { object: "list", data: shown.map(present), next_cursor: more && last !== undefined ? encodeCursor(position(last)) : null };
}
