import { Hono } from "hono";
import { ApiError } from "../errors.ts";
import { flushCounters, renderCounters } from "../platform/metrics.ts";
import type { AdminEnv } from "./auth.ts";

/**
 * `GET /admin/metrics` (operator only): the gateway's dependency-failure counters as Prometheus
 * text — how often rate limits failed open and budgets failed closed (platform/metrics.ts).
 */
export const metricsRoutes = new Hono<AdminEnv>().get("/", async (c) => {
  if (c.var.actor.kind !== "operator") throw new ApiError("permission_denied", "Metrics are for the operator (ADMIN_TOKEN).");
  await flushCounters(c.var.redis, c.var.settings.redisPrefix);
  const text = await renderCounters(c.var.redis, c.var.settings.redisPrefix);
  return c.text(text, 200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" });
});
