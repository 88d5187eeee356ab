/** Helpers of the dashboard tests (workerd): sign in through the real forms, then load pages and post forms. */
import "../support/provided-context.ts";
import { exports } from "cloudflare:workers";
import { expect, inject } from "vitest";

const ORIGIN = "http://gateway.test";

/** A signed-in browser, as far as the server can tell: its cookies and the page's CSRF token. */
export interface Browser {
  cookies: Map<string, string>;
  csrf: string;
}

function cookieHeader(b: { cookies: Map<string, string> }): string {
  return [...b.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
}

function keep(b: { cookies: Map<string, string> }, res: Response): void {
  for (const line of res.headers.getSetCookie()) {
    const [pair] = line.split(";");
    const eq = (pair ?? "").indexOf("=");
    const name = (pair ?? "").slice(0, eq);
    const value = (pair ?? "").slice(eq + 1);
    if (/max-age=0/i.test(line) || value === "") b.cookies.delete(name);
    else b.cookies.set(name, value);
  }
}

/** GETs a dashboard path (no redirects followed). */
export async function getPage(b: { cookies: Map<string, string> }, path: string): Promise<{ status: number; html: string; headers: Headers }> {
  const res = await exports.default.fetch(new Request(`${ORIGIN}${path}`, { headers: { cookie: cookieHeader(b) }, redirect: "manual" }));
  keep(b, res);
  return { status: res.status, html: await res.text(), headers: res.headers };
}

/** POSTs a form (the browser's CSRF token added unless `fields._csrf` is given or null). */
export async function postForm(
  b: Browser,
  path: string,
  fields: Record<string, string | null> = {},
  opts: { origin?: string } = {},
): Promise<{ status: number; html: string; headers: Headers; location: string | null }> {
  const form = new URLSearchParams();
  const withCsrf: Record<string, string | null> = { _csrf: b.csrf, ...fields };
  for (const [k, v] of Object.entries(withCsrf)) if (v !== null) form.set(k, v);
  const headers: Record<string, string> = { cookie: cookieHeader(b), "content-type": "application/x-www-form-urlencoded", origin: opts.origin ?? ORIGIN };
  const res = await exports.default.fetch(new Request(`${ORIGIN}${path}`, { method: "POST", headers, body: form.toString(), redirect: "manual" }));
  keep(b, res);
  const html = await res.text();
  const csrf = /name="_csrf" value="([^"]+)"/.exec(html)?.[1];
  if (csrf) b.csrf = csrf;
  return { status: res.status, html, headers: res.headers, location: res.headers.get("location") };
}

/** Signs in through the login form with `token` (the operator's ADMIN_TOKEN by default). */
export async function signIn(token: string = inject("adminToken")): Promise<Browser> {
  const b: Browser = { cookies: new Map(), csrf: "" };
  const login = await getPage(b, "/dashboard/login");
  const loginToken = /name="_login" value="([^"]+)"/.exec(login.html)?.[1] ?? "";
  const res = await postForm(b, "/dashboard/login", { _csrf: null, _login: loginToken, token });
  expect(res.status, res.html).toBe(303);
  const home = await getPage(b, "/dashboard");
  expect(home.status).toBe(200);
  b.csrf = /name="_csrf" value="([^"]+)"/.exec(home.html)?.[1] ?? "";
  return b;
}
