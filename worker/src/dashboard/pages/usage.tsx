/** @jsxImportSource hono/jsx */
import { Hono } from "hono";
import { sessionOf, type DashboardEnv } from "../env.ts";
import { Page } from "../ui.tsx";
import { takeFlash } from "../http.ts";

/** The usage page. */
export const usagePages = new Hono<DashboardEnv>().get("/", (c) =>
  c.html(
    <Page title="usage" session={sessionOf(c)} current="/usage" flash={takeFlash(c)}>
      <h1>usage</h1>
    </Page>,
  ),
);
