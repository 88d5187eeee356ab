/**
 * What a breadcrumb and the trails' queries may hold (docs/memory.md#limits). A problem is a 400 in
 * OpenAI's shape naming the field: `missing_field` when it is absent, `invalid_value` otherwise.
 */
import { ApiError } from "../errors.ts";

/** The limits of a breadcrumb's fields, in characters (UTF-16 code units, as JavaScript counts them). */
export const MEMORY_LIMITS = { source: 200, target: 200, content: 8000 } as const;

/** A breadcrumb to leave: a trail is (source, target); no target (absent or null) is a trail of its own. */
export interface Breadcrumb {
  source: string;
  target?: string | null;
  content: string;
}

/** A breadcrumb that passed the checks. */
export interface CheckedBreadcrumb {
  source: string;
  target: string | null;
  content: string;
}

const FIELDS = new Set(["source", "target", "content"]);

function text(value: unknown, field: "source" | "target" | "content"): string {
  if (typeof value !== "string") throw new ApiError("invalid_value", `Invalid ${field}: expected a string.`, { param: field });
  const max = MEMORY_LIMITS[field];
  // Blank text would make a trail (or a breadcrumb) nobody can tell apart from another.
  if (value.trim() === "") throw new ApiError("invalid_value", `Invalid ${field}: it must not be empty or blank.`, { param: field });
  if (value.length > max) throw new ApiError("invalid_value", `Invalid ${field}: at most ${max} characters, got ${value.length}.`, { param: field });
  return value;
}

/** Checks a breadcrumb's fields against `MEMORY_LIMITS`; throws a 400 `ApiError` naming the field. */
export function checkBreadcrumb(crumb: Breadcrumb): CheckedBreadcrumb {
  return {
    source: text(crumb.source, "source"),
    target: crumb.target === undefined || crumb.target === null ? null : text(crumb.target, "target"),
    content: text(crumb.content, "content"),
  };
}

/** Parses the body of `POST /v1/memory/breadcrumb` (a JSON object with source, content and optional target; nothing else). */
export function parseBreadcrumbBody(body: unknown): CheckedBreadcrumb {
  if (body === null || typeof body !== "object" || Array.isArray(body)) throw new ApiError("invalid_value", "The request body must be a JSON object with source, content and optional target.");
  const fields = body as Record<string, unknown>;
  // An unknown field is most likely a misspelt one (`targt`): refused rather than silently dropped.
  const unknown = Object.keys(fields).find((k) => !FIELDS.has(k));
  if (unknown !== undefined) throw new ApiError("invalid_value", `Unknown field ${unknown}: a breadcrumb has source, content and optional target.`, { param: unknown });
  for (const field of ["source", "content"] as const) {
    if (fields[field] === undefined) throw new ApiError("missing_field", `Missing required field ${field}.`, { param: field });
  }
  return checkBreadcrumb({ source: fields.source as string, target: fields.target as string | null | undefined, content: fields.content as string });
}

/** The hot list's default and largest `limit`. */
export const HOT_LIMIT = { default: 50, max: 200 } as const;
/** The hot list's default `min_temp`. */
export const DEFAULT_MIN_TEMP = 70;

function numberParam(raw: string | undefined, param: string, fallback: number, check: (n: number) => boolean, expected: string): number {
  if (raw === undefined) return fallback;
  const value = raw.trim() === "" ? Number.NaN : Number(raw);
  if (!Number.isFinite(value) || !check(value)) throw new ApiError("invalid_value", `Invalid ${param}: expected ${expected}, got "${raw}".`, { param });
  return value;
}

/** Parses `?min_temp=` (0–100, default 70) and `?limit=` (1–200, default 50) of the hot list; any other parameter is refused. */
export function parseHotQuery(query: Record<string, string>): { minTemperature: number; limit: number } {
  const unknown = Object.keys(query).find((k) => k !== "min_temp" && k !== "limit");
  if (unknown !== undefined) throw new ApiError("invalid_value", `Unknown query parameter ${unknown}: the hot list takes min_temp and limit.`, { param: unknown });
  return {
    minTemperature: numberParam(query.min_temp, "min_temp", DEFAULT_MIN_TEMP, (n) => n >= 0 && n <= 100, "a number from 0 to 100"),
    limit: numberParam(query.limit, "limit", HOT_LIMIT.default, (n) => Number.isInteger(n) && n >= 1 && n <= HOT_LIMIT.max, `a whole number from 1 to ${HOT_LIMIT.max}`),
  };
}
