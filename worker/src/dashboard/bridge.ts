/**
 * The dashboard reads and changes everything through the admin API (no second data path): it calls
 * the admin routes in-process with its session's actor, so the same handlers, tenant scoping,
 * validation and audit rows apply as for `curl /admin/…`. A viewer's session may only read.
 */
import { Hono, type Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { AdminActor, AdminEnv } from "../admin/auth.ts";
import { adminRoutes } from "../admin/index.ts";
import type { AppEnv } from "../env.ts";
import { ApiError, errorResponse, type OpenAIErrorBody } from "../errors.ts";
import type { ListBody } from "../admin/pagination.ts";
import type { DashboardSession } from "./session.ts";

interface CallContext {
  deps: AppEnv["Variables"]["deps"];
  actor: AdminActor;
  readOnly: boolean;
}

// The context of each in-flight call, keyed by its Request object: nothing a browser sends can set it.
const calls = new WeakMap<Request, CallContext>();

let bridge: Hono<AdminEnv> | null = null;

function bridgeApp(): Hono<AdminEnv> {
  bridge ??= new Hono<AdminEnv>()
    .use(async (c, next) => {
      const call = calls.get(c.req.raw);
      if (!call) throw new ApiError("permission_denied", "Not a dashboard call.");
      if (call.readOnly && c.req.method !== "GET") {
        throw new ApiError("permission_denied", "Your dashboard role is viewer: you can look, not change. Ask an admin of your organisation for the admin role.");
      }
      c.set("deps", call.deps);
      c.set("actor", call.actor);
      await next();
    })
    .route("/admin", adminRoutes())
    .onError((err, c) => {
      if (err instanceof ApiError) return errorResponse(err);
      c.get("deps").log("dashboard_admin_call_failed", { requestId: c.get("deps").requestId, path: c.req.path, error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
      return errorResponse(new ApiError("internal_error", `The admin API hit an unexpected error; report request id ${c.get("deps").requestId}.`));
    });
  return bridge;
}

/** An admin API answer: the parsed JSON (or text for CSV) and, on failure, its error. */
export type AdminAnswer<T> = { ok: true; status: number; data: T; text: string } | { ok: false; status: number; error: OpenAIErrorBody["error"] };

/**
 * Calls `method path` (`/admin/…`, with its query) on the admin API as the session's actor. Never
 * throws for an API error: the page shows `error.message`, which says what to do.
 */
export async function adminCall<T>(c: Context<AppEnv>, session: DashboardSession, method: string, path: string, body?: unknown): Promise<AdminAnswer<T>> {
  const init: RequestInit = { method, headers: { accept: "application/json" } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { accept: "application/json", "content-type": "application/json" };
  }
  // The page's own origin: answers that name this gateway (the SSO redirect URI) stay true.
  const req = new Request(new URL(path, c.req.url), init);
  calls.set(req, { deps: c.get("deps"), actor: session.actor, readOnly: session.role === "viewer" });
  const res = await bridgeApp().fetch(req, c.env, c.executionCtx);
  const text = await res.text();
  if (!res.ok) {
    let error: OpenAIErrorBody["error"] = { message: `The admin API answered ${res.status}.`, type: "api_error", param: null, code: null };
    try {
      error = (JSON.parse(text) as OpenAIErrorBody).error;
    } catch {
      // not JSON: keep the generic message
    }
    return { ok: false, status: res.status, error };
  }
  let data: unknown = text;
  if ((res.headers.get("content-type") ?? "").includes("json") && text !== "") data = JSON.parse(text);
  return { ok: true, status: res.status, data: data as T, text };
}

/** Like adminCall, for reads a page cannot do without: an error becomes the page's error. */
export async function adminGet<T>(c: Context<AppEnv>, session: DashboardSession, path: string): Promise<T> {
  const answer = await adminCall<T>(c, session, "GET", path);
  if (!answer.ok) {
    const code = answer.error.code;
    throw new ApiError(code === "not_found" ? "not_found" : code === "permission_denied" ? "permission_denied" : "upstream_error", answer.error.message, { status: answer.status as ContentfulStatusCode });
  }
  return answer.data;
}

/** Pages of 200 a page reads at most from one admin list: what it shows stays bounded. */
export const LIST_MAX_PAGES = 5;

/**
 * The items of an admin list, following `next_cursor`, up to LIST_MAX_PAGES pages of 200 (or until
 * `enough` says so). `complete` is false when items were left unread.
 */
export async function adminList<T>(
  c: Context<AppEnv>,
  session: DashboardSession,
  path: string,
  enough: (items: T[]) => boolean = () => false,
): Promise<{ items: T[]; complete: boolean }> {
  const items: T[] = [];
  let cursor: string | null = null;
  const sep = path.includes("?") ? "&" : "?";
  for (let i = 0; i < LIST_MAX_PAGES; i++) {
    const page: ListBody<T> = await adminGet<ListBody<T>>(c, session, `${path}${sep}limit=200${cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`}`);
    items.push(...page.data);
    cursor = page.next_cursor;
    if (cursor === null) return { items, complete: true };
    if (enough(items)) break;
  }
  return { items, complete: false };
}
