/** @jsxImportSource hono/jsx */
import { Hono } from "hono";
import { sessionOf, type DashboardEnv } from "../env.ts";
import { Page } from "../ui.tsx";
import { takeFlash } from "../http.ts";

/** The audit page. */
export const auditPage = new Hono<DashboardEnv>().get("/", (c) =>
  c.html(
    <Page title="audit" session={sessionOf(c)} current="/audit" flash={takeFlash(c)}>
      <h1>audit</h1>
    </Page>,
  ),
);
