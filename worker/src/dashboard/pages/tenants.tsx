/** @jsxImportSource hono/jsx */
import { Hono } from "hono";
import { sessionOf, type DashboardEnv } from "../env.ts";
import { Page } from "../ui.tsx";
import { takeFlash } from "../http.ts";

/** The tenants page. */
export const tenantPages = new Hono<DashboardEnv>().get("/", (c) =>
  c.html(
    <Page title="tenants" session={sessionOf(c)} current="/tenants" flash={takeFlash(c)}>
      <h1>tenants</h1>
    </Page>,
  ),
);
