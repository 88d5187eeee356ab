import { Hono } from "hono";
import { ApiError } from "../errors.ts";
import { auditOutboxKey } from "../audit/outbox.ts";
import { usageOutboxKey } from "../metering/flush.ts";
import { flushCounters, renderCounters } from "../platform/metrics.ts";
import { backlog } from "../platform/outbox.ts";
import type { AdminEnv } from "./auth.ts";

/**
 * `GET /admin/metrics` (operator only): the gateway's dependency-failure counters as Prometheus
 * text — how often rate limits failed open and budgets failed closed (platform/metrics.ts) — and
 * the backlog of usage and audit events waiting in Redis for the scheduled job.
 */
export const metricsRoutes = new Hono<AdminEnv>().get("/", async (c) => {
  if (c.var.actor.kind !== "operator") throw new ApiError("permission_denied", "Metrics are for the operator (ADMIN_TOKEN).");
  await flushCounters(c.var.redis, c.var.settings.redisPrefix);
  const prefix = c.var.settings.redisPrefix;
  const [counters, usage, audit] = await Promise.all([
    renderCounters(c.var.redis, prefix),
    backlog(c.var.redis, usageOutboxKey(prefix)),
    backlog(c.var.redis, auditOutboxKey(prefix)),
  ]);
  const gauges = [
    "# HELP switchyard_outbox_backlog Events queued in Redis and not yet written to Postgres by the scheduled job.",
    "# TYPE switchyard_outbox_backlog gauge",
    `switchyard_outbox_backlog{queue="usage"} ${usage}`,
    `switchyard_outbox_backlog{queue="audit"} ${audit}`,
  ].join("\n");
  return c.text(`${counters}${gauges}\n`, 200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" });
});
