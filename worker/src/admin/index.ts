/**
 * The admin API, mounted at `/admin`: tenants, environments, keys, limits, budgets, counters, usage
 * reports and the audit log, as JSON. Every change writes an audit row in its transaction and drops
 * the caches it makes stale before answering (invalidate.ts), so it reaches the gateway within seconds.
 * Not on the hot path: each call opens its own database connection.
 */
import { Hono } from "hono";
import { auditRoutes } from "./audit.ts";
import { requireAdmin, type AdminEnv } from "./auth.ts";
import { budgetRoutes } from "./budgets.ts";
import { counterRoutes } from "./counters.ts";
import { creditRoutes } from "./credits.ts";
import { environmentRoutes } from "./environments.ts";
import { keyRoutes } from "./keys.ts";
import { limitRoutes } from "./limits.ts";
import { billingRoutes } from "../billing/export.ts";
import { metricsRoutes, outboxRoutes } from "./metrics.ts";
import { modelRoutes } from "./models.ts";
import { nodeRoutes } from "./nodes.ts";
import { reconciliationRoutes } from "./reconciliation.ts";
import { regionRoutes } from "./regions.ts";
import { reservationRoutes } from "./reservations.ts";
import { tenantRoutes } from "./tenants.ts";
import { usageRoutes } from "./usage.ts";

/** Builds the admin sub-app (authenticated by ADMIN_TOKEN or an admin-scoped key, auth.ts). */
export function adminApp(): Hono<AdminEnv> {
  return new Hono<AdminEnv>()
    .use(requireAdmin)
    .route("/tenants", tenantRoutes)
    .route("/environments", environmentRoutes)
    .route("/keys", keyRoutes)
    .route("/limits", limitRoutes)
    .route("/budgets", budgetRoutes)
    .route("/credits", creditRoutes)
    .route("/counters", counterRoutes)
    .route("/audit", auditRoutes)
    .route("/usage", usageRoutes)
    .route("/metrics", metricsRoutes)
    .route("/outbox", outboxRoutes)
    .route("/reconciliation", reconciliationRoutes)
    .route("/models", modelRoutes)
    .route("/nodes", nodeRoutes)
    .route("/regions", regionRoutes)
    .route("/reservations", reservationRoutes)
    .route("/billing", billingRoutes);
}
