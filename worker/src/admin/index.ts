/**
 * The admin API, mounted at `/admin`: tenants, environments, keys, limits, budgets, counters, usage
 * reports and the audit log, as JSON. Every change writes an audit row in its transaction and drops
 * the caches it makes stale before answering (invalidate.ts), so it reaches the gateway within seconds.
 * Not on the hot path: each call opens its own database connection. Each capability's routes live
 * in its own folder (limits/admin.ts, auth/keys-admin.ts, …); this file only mounts them.
 */
import { Hono } from "hono";
import { auditRoutes } from "../audit/admin.ts";
import { autoscalingRoutes } from "../autoscaling/admin.ts";
import { conversationRoutes } from "../conversations/admin.ts";
import { requireAdmin, type AdminEnv } from "./auth.ts";
import { catalogueDocumentRoutes } from "../routing/catalogue-document.ts";
import { budgetRoutes } from "../limits/budgets-admin.ts";
import { counterRoutes } from "../limits/counters-admin.ts";
import { creditRoutes } from "../metering/credits-admin.ts";
import { environmentRoutes } from "../tenancy/environments-admin.ts";
import { keyRoutes } from "../auth/keys-admin.ts";
import { limitRoutes } from "../limits/admin.ts";
import { billingRoutes } from "../billing/export.ts";
import { metricsRoutes, outboxRoutes } from "../platform/metrics-admin.ts";
import { modelRoutes } from "../routing/models-admin.ts";
import { nodeRoutes } from "../nodes/admin.ts";
import { nodeAdapterRoutes } from "../nodes/adapters-admin.ts";
import { nodeHostRoutes } from "../nodes/host-admin.ts";
import { provisioningRoutes } from "../provisioning/admin.ts";
import { reconciliationRoutes } from "../metering/reconcile-admin.ts";
import { regionRoutes } from "../routing/regions-admin.ts";
import { reservationRoutes } from "../routing/reservations-admin.ts";
import { tenantRoutes } from "../tenancy/tenants-admin.ts";
import { usageRoutes } from "../usage/admin.ts";
import { streamProfileRoutes } from "../profiles/admin.ts";
import { councilRoutes, councilVoteRoutes } from "../council/admin.ts";
import { cacheRoutes } from "../cache/admin.ts";
import { memoryAdminRoutes } from "../memory/admin.ts";
import { fedattnAdminRoutes } from "../fedattn/admin.ts";
import { ssoAdminRoutes } from "../dashboard/sso-admin.ts";

/** Builds the admin sub-app (authenticated by ADMIN_TOKEN or an admin-scoped key, auth.ts). */
export function adminApp(): Hono<AdminEnv> {
  return new Hono<AdminEnv>().use(requireAdmin).route("/", adminRoutes());
}

/**
 * The admin routes without their authentication: `adminApp` puts `requireAdmin` in front; the
 * dashboard (dashboard/bridge.ts) calls them in-process with the actor of its session, so both
 * read and change through the same handlers, scope checks and audit rows.
 */
export function adminRoutes(): Hono<AdminEnv> {
  return new Hono<AdminEnv>()
    .route("/tenants", tenantRoutes)
    .route("/environments", environmentRoutes)
    .route("/keys", keyRoutes)
    .route("/limits", limitRoutes)
    .route("/budgets", budgetRoutes)
    .route("/credits", creditRoutes)
    .route("/counters", counterRoutes)
    .route("/audit", auditRoutes)
    .route("/conversations", conversationRoutes)
    .route("/usage", usageRoutes)
    .route("/metrics", metricsRoutes)
    .route("/outbox", outboxRoutes)
    .route("/reconciliation", reconciliationRoutes)
    // Before /models: its /:id would take "configured" for a model id.
    .route("/models/configured", catalogueDocumentRoutes)
    .route("/models", modelRoutes)
    // Before /nodes: its /:id would take "launch" and "launches" for node ids.
    .route("/nodes", provisioningRoutes)
    .route("/nodes", nodeRoutes)
    .route("/nodes", nodeAdapterRoutes)
    .route("/nodes", nodeHostRoutes)
    .route("/regions", regionRoutes)
    .route("/autoscaling", autoscalingRoutes)
    .route("/reservations", reservationRoutes)
    .route("/billing", billingRoutes)
    .route("/stream-profiles", streamProfileRoutes)
    .route("/councils", councilRoutes)
    .route("/fedattn", fedattnAdminRoutes)
    .route("/council/votes", councilVoteRoutes)
    .route("/cache", cacheRoutes)
    .route("/memory", memoryAdminRoutes)
    .route("/sso", ssoAdminRoutes);
}
