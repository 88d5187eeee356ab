/** @jsxImportSource hono/jsx */
import { Hono } from "hono";
import { sessionOf, type DashboardEnv } from "../env.ts";
import { Page } from "../ui.tsx";
import { takeFlash } from "../http.ts";

/** The overview page. */
export const overviewPage = new Hono<DashboardEnv>().get("/", (c) =>
  c.html(
    <Page title="overview" session={sessionOf(c)} current="/overview" flash={takeFlash(c)}>
      <h1>overview</h1>
    </Page>,
  ),
);
