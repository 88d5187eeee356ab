import type { Context } from "hono";
import type { z } from "zod";
import { ApiError } from "../errors.ts";
import type { AdminActor, AdminEnv } from "./auth.ts";
import type { AdminDb } from "./store.ts";

/** The admin API's request context. */
export type AdminContext = Context<AdminEnv>;

/** Runs `fn` in one database transaction (the change and its audit row commit together). */
export function inTransaction<T>(c: AdminContext, fn: (db: AdminDb) => Promise<T>): Promise<T> {
  return c.get("deps").db((db) => db.transaction((tx) => fn(tx)));
}

/** Runs read-only queries on one connection. */
export function reading<T>(c: AdminContext, fn: (db: AdminDb) => Promise<T>): Promise<T> {
  return c.get("deps").db((db) => fn(db));
}

/** Turns the first zod issue into a 400 naming the field. */
function invalid(error: z.ZodError): ApiError {
  const issue = error.issues[0];
  if (issue?.code === "unrecognized_keys") {
    const param = [...issue.path.map(String), String(issue.keys[0])].join(".");
    return new ApiError("invalid_value", `Unknown field ${param}.`, { param });
  }
  const param = issue?.path.map(String).join(".") || null;
  return new ApiError("invalid_value", `Invalid ${param ?? "body"}: ${issue?.message ?? "invalid value"}.`, { param });
}

/** Parses the JSON body with `schema` (an empty body counts as `{}`). */
export async function readJson<S extends z.ZodType>(c: AdminContext, schema: S): Promise<z.infer<S>> {
  const text = await c.req.text();
  let json: unknown = {};
  if (text.trim() !== "") {
    try {
      json = JSON.parse(text);
    } catch {
      throw new ApiError("invalid_json", "The request body is not valid JSON.");
    }
  }
  const result = schema.safeParse(json);
  if (!result.success) throw invalid(result.error);
  return result.data;
}

/** Parses query parameters with `schema`. */
export function readQuery<S extends z.ZodType>(c: AdminContext, schema: S): z.infer<S> {
  const result = schema.safeParse(c.req.query());
  if (!result.success) throw invalid(result.error);
  return result.data;
}

/** 404 for anything missing or outside the caller's tenant (the two are never told apart). */
export function notFound(what: string, id: string): ApiError {
  return new ApiError("not_found", `No ${what} with id ${id}.`);
}

/** True when the actor may see things that belong to `tenantId`. */
export function canSee(actor: AdminActor, tenantId: string | null): boolean {
  return actor.kind === "operator" || actor.tenantId === tenantId;
}

/** Refuses an operation reserved to the operator (ADMIN_TOKEN). */
export function requireOperator(actor: AdminActor, what: string): void {
  if (actor.kind !== "operator") {
    throw new ApiError("permission_denied", `Only the operator (ADMIN_TOKEN) can ${what}; tenant admin keys manage their own environments, keys and their limits.`);
  }
}

/** True for a Postgres unique violation, however drizzle wrapped it. */
export function isUniqueViolation(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && typeof e === "object" && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    if ((e as { code?: unknown }).code === "23505") return true;
  }
  return false;
}

/** Runs a write and turns a unique violation into 409 `conflict` with `message`. */
export async function unique<T>(message: string, param: string | null, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (isUniqueViolation(err)) throw new ApiError("conflict", message, { param });
    throw err;
  }
}

/** The fields of a change that are set (drizzle refuses an UPDATE with nothing to set). */
export function definedFields<T extends Record<string, unknown>>(change: T): Partial<T> | null {
  const entries = Object.entries(change).filter(([, v]) => v !== undefined);
  return entries.length === 0 ? null : (Object.fromEntries(entries) as Partial<T>);
}
