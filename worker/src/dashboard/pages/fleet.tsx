/** @jsxImportSource hono/jsx */
import { Hono } from "hono";
import { sessionOf, type DashboardEnv } from "../env.ts";
import { Page } from "../ui.tsx";
import { takeFlash } from "../http.ts";

/** The fleet page. */
export const fleetPages = new Hono<DashboardEnv>().get("/", (c) =>
  c.html(
    <Page title="fleet" session={sessionOf(c)} current="/fleet" flash={takeFlash(c)}>
      <h1>fleet</h1>
    </Page>,
  ),
);
