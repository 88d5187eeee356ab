/** @jsxImportSource hono/jsx */
/** The pages of the single sign-on flow: choosing among organisations, and moving on after the callback. */
import type { Context } from "hono";
import type { AppEnv } from "../env.ts";
import type { SsoCandidate } from "./sso.ts";
import { BASE, Page } from "./ui.tsx";

/** Several organisations admit the address: one link each (each starts that organisation's SSO). */
export function ssoChoicePage(c: Context<AppEnv>, candidates: SsoCandidate[], email: string, next: string): Response | Promise<Response> {
  return c.html(
    <Page title="Choose an organisation" session={null}>
      <div class="login">
        <h1>Choose an organisation</h1>
        <p>{`${email} can sign in to several organisations:`}</p>
        <ul>
          {candidates.map((t) => (
            <li>
              <a href={`${BASE}/login/sso/start/${encodeURIComponent(t.tenantId)}?email=${encodeURIComponent(email)}&next=${encodeURIComponent(next)}`}>{t.tenantName}</a>{" "}
              <span class="muted mono">{t.tenantId}</span>
            </li>
          ))}
        </ul>
      </div>
    </Page>,
  );
}

/**
 * After the callback: the session cookie (SameSite=Strict) is set, but this navigation began on the
 * issuer's site, so a redirect would arrive without it. A same-site refresh (and a link) moves on.
 */
export function ssoContinuePage(c: Context<AppEnv>, next: string): Response | Promise<Response> {
  c.header("refresh", `0; url=${next}`);
  return c.html(
    <Page title="Signed in" session={null}>
      <div class="login">
        <h1>Signed in</h1>
        <p>
          <a href={next}>Continue to the dashboard</a>
        </p>
      </div>
    </Page>,
  );
}
