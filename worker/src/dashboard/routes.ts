/**
 * The dashboard (`/dashboard`, docs/dashboard.md): server-rendered pages over the admin API
 * (bridge.ts), signed in with the admin token, an admin key or the tenant's single sign-on. Every
 * page needs a live session; every POST also needs the session's CSRF token and a same-origin
 * Origin header. Pages are HTML with strict security headers and are never cached.
 */
import { Hono } from "hono";
import type { AppEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { DASHBOARD_ASSET_VERSION, DASHBOARD_CSS, DASHBOARD_JS } from "./assets.generated.ts";
import type { DashboardEnv } from "./env.ts";
import { formOf } from "./http.ts";
import { loginRoutes } from "./login.tsx";
import { auditPage } from "./pages/audit.tsx";
import { fleetPages } from "./pages/fleet.tsx";
import { overviewPage } from "./pages/overview.tsx";
import { ssoPages } from "./pages/sso.tsx";
import { tenantPages } from "./pages/tenants.tsx";
import { usagePages } from "./pages/usage.tsx";
import { loadSession, sameSecret } from "./session.ts";
import { ssoRoutes } from "./sso.ts";
import { BASE } from "./ui.tsx";
import { errorPage } from "./error-page.tsx";

// No inline script or style, no framing, forms only to this origin (the SSO redirect is a GET link
// target, not a form action), no referrer to other sites.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

const ASSET_JS = `/assets/app.${DASHBOARD_ASSET_VERSION}.js`;
const ASSET_CSS = `/assets/app.${DASHBOARD_ASSET_VERSION}.css`;

/** The signed-in pages: a session is required, and a POST needs its CSRF token. */
const pages = new Hono<DashboardEnv>()
  .use(async (c, next) => {
    const session = await loadSession(c);
    if (!session) {
      if (c.req.method === "GET") return c.redirect(`${BASE}/login?next=${encodeURIComponent(c.req.path + (new URL(c.req.url).search || ""))}`, 303);
      throw new ApiError("invalid_api_key", "Your dashboard session ended. Sign in again at /dashboard/login.", { status: 401 });
    }
    if (c.req.method !== "GET" && c.req.method !== "HEAD") {
      const origin = c.req.header("origin");
      if (origin !== undefined && origin !== new URL(c.req.url).origin) {
        throw new ApiError("permission_denied", "This change came from another site and was refused.");
      }
      const form = await formOf(c);
      const sent = form._csrf ?? c.req.header("x-csrf-token") ?? "";
      if (!(await sameSecret(sent, session.csrf))) {
        throw new ApiError("permission_denied", "This change is missing the dashboard's CSRF token. Reload the page and submit the form again.");
      }
    }
    c.set("session", session);
    await next();
  })
  .route("/", overviewPage)
  .route("/tenants", tenantPages)
  .route("/usage", usagePages)
  .route("/fleet", fleetPages)
  .route("/audit", auditPage)
  .route("/sso", ssoPages);

/** The dashboard app, mounted at `/dashboard`. */
export const dashboardRoutes = new Hono<AppEnv>()
  .use(async (c, next) => {
    await next();
    c.header("content-security-policy", CSP);
    c.header("x-frame-options", "DENY");
    c.header("x-content-type-options", "nosniff");
    c.header("referrer-policy", "same-origin");
    if (!c.req.path.startsWith(`${BASE}/assets/`)) c.header("cache-control", "no-store");
  })
  .get(ASSET_JS, (c) => c.body(DASHBOARD_JS, 200, { "content-type": "text/javascript; charset=utf-8", "cache-control": "public, max-age=31536000, immutable" }))
  .get(ASSET_CSS, (c) => c.body(DASHBOARD_CSS, 200, { "content-type": "text/css; charset=utf-8", "cache-control": "public, max-age=31536000, immutable" }))
  .route("/", loginRoutes)
  .route("/login/sso", ssoRoutes)
  .route("/", pages)
  .onError((err, c) => errorPage(c, err));
