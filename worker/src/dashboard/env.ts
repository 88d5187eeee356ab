import type { Context } from "hono";
import type { AppEnv } from "../env.ts";
import type { DashboardSession } from "./session.ts";

/** Hono environment of the dashboard: the gateway's, plus the session once the page checked it. */
export interface DashboardEnv {
  Bindings: AppEnv["Bindings"];
  Variables: AppEnv["Variables"] & { session?: DashboardSession };
}

/** A dashboard page's context. */
export type DashboardContext = Context<DashboardEnv>;

/** The signed-in session of a page behind the session check (routes.ts). */
export function sessionOf(c: DashboardContext): DashboardSession {
  const session = c.get("session");
  if (!session) throw new Error("dashboard page reached without a session");
  return session;
}
