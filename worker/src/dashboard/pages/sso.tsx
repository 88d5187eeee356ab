/** @jsxImportSource hono/jsx */
import { Hono } from "hono";
import { sessionOf, type DashboardEnv } from "../env.ts";
import { Page } from "../ui.tsx";
import { takeFlash } from "../http.ts";

/** The sso page. */
export const ssoPages = new Hono<DashboardEnv>().get("/", (c) =>
  c.html(
    <Page title="sso" session={sessionOf(c)} current="/sso" flash={takeFlash(c)}>
      <h1>sso</h1>
    </Page>,
  ),
);
