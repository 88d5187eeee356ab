/** Small helpers of the dashboard's pages: form fields, redirects with a one-time message. */
import type { Context } from "hono";
import { getCookie } from "hono/cookie";
import type { AppEnv } from "../env.ts";
import { clearHostCookie, setHostCookie } from "./session.ts";
import type { Flash } from "./ui.tsx";

const FLASH_COOKIE = "__Host-switchyard_flash";

/** The submitted form's text fields (files are ignored; the dashboard has none). */
export async function formOf(c: Context<AppEnv>): Promise<Record<string, string>> {
  const body = await c.req.parseBody();
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(body)) if (typeof v === "string") out[k] = v;
  return out;
}

/** 303 to `location` (a dashboard path) with a message for the next page. */
export function redirectWith(c: Context<AppEnv>, location: string, flash: Flash | null): Response {
  if (flash) setHostCookie(c, FLASH_COOKIE, encodeURIComponent(JSON.stringify(flash)), 60);
  return c.redirect(location, 303);
}

/** The message left by the previous action, if any (shown once). */
export function takeFlash(c: Context<AppEnv>): Flash | null {
  const raw = getCookie(c, FLASH_COOKIE);
  if (raw === undefined) return null;
  clearHostCookie(c, FLASH_COOKIE);
  try {
    const f = JSON.parse(decodeURIComponent(raw)) as Partial<Flash>;
    if ((f.kind === "ok" || f.kind === "error") && typeof f.text === "string") return { kind: f.kind, text: f.text.slice(0, 500) };
  } catch {
    // a mangled cookie: no message
  }
  return null;
}

/** A relative dashboard path from a `next` parameter, or the overview (never another origin). */
export function safeNext(next: string | undefined): string {
  if (next && next.startsWith("/dashboard") && !next.startsWith("//") && !/[\\\r\n]/.test(next)) return next;
  return "/dashboard";
}
