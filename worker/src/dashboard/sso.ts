import { Hono } from "hono";
import type { AppEnv } from "../env.ts";

/** Single sign-on (OpenID Connect): discovery by email, the redirect to the issuer, the callback. */
export const ssoRoutes = new Hono<AppEnv>();
