/** @jsxImportSource hono/jsx */
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { AppEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { BASE, Page } from "./ui.tsx";

/**
 * A dashboard error as a page: the admin API's message (which says what to do) and its status. An
 * unexpected error is logged with the request id and shown only by that id.
 */
export function errorPage(c: Context<AppEnv>, err: Error): Response | Promise<Response> {
  const deps = c.get("deps");
  let status: ContentfulStatusCode = 500;
  let message = `The dashboard hit an unexpected error. Reload the page; if it persists, report request id ${deps.requestId}.`;
  if (err instanceof ApiError) {
    status = err.status;
    message = err.message;
  } else {
    deps.log("dashboard_error", { requestId: deps.requestId, path: c.req.path, error: err.stack ?? err.message });
  }
  return c.html(
    <Page title="Error" session={null} flash={{ kind: "error", text: message }}>
      <h1>{status === 404 ? "Not found" : status === 403 ? "Not allowed" : status === 401 ? "Signed out" : "Something went wrong"}</h1>
      <p>
        <a href={BASE}>Back to the dashboard</a>
      </p>
    </Page>,
    status,
  );
}
