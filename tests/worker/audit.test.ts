import { createExecutionContext, createScheduledController, env, waitOnExecutionContext } from "cloudflare:test";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { inject } from "vitest";
import { auditLogs } from "../../schema/tables/index.ts";
import { auditOutboxKey } from "../../worker/src/audit/outbox.ts";
import worker from "../../worker/src/index.ts";
import { gateway, query, redis } from "./helpers.ts";

async function runCron(): Promise<void> {
  const ctx = createExecutionContext();
  worker.scheduled(createScheduledController({ cron: "* * * * *", scheduledTime: Date.now() }), env, ctx);
  await waitOnExecutionContext(ctx);
}

describe("authentication audit", () => {
  it("records every attempt, success and failure, with prefix, tenant, route, client IP and reason, via the scheduled flush", async () => {
    const requestIds: string[] = [];
    const ok = await gateway("/v1/models", { headers: { "cf-connecting-ip": "203.0.113.7" } });
    expect(ok.status).toBe(200);
    requestIds.push(ok.headers.get("x-request-id") ?? "");
    const bad = await gateway("/v1/models", { key: `sk-sy-${"Z".repeat(43)}`, headers: { "cf-connecting-ip": "203.0.113.8" } });
    expect(bad.status).toBe(401);
    requestIds.push(bad.headers.get("x-request-id") ?? "");
    const suspended = await gateway("/v1/models", { key: inject("keys").suspended });
    expect(suspended.status).toBe(403);

    // waitUntil work of those requests has landed in the outbox by the time the cron runs.
    await new Promise((r) => setTimeout(r, 200));
    expect(await redis().llen(auditOutboxKey(env.REDIS_PREFIX))).toBeGreaterThanOrEqual(3);
    await runCron();
    expect(await redis().llen(auditOutboxKey(env.REDIS_PREFIX))).toBe(0);

    const rows = await query((db) => db.select().from(auditLogs).where(eq(auditLogs.targetId, "GET /v1/models")));
    const byRequest = (id: string) => rows.find((r) => (r.details as { requestId?: string }).requestId === id);
    expect(byRequest(requestIds[0] ?? "")).toMatchObject({
      action: "auth.success",
      success: true,
      tenantId: inject("tenantId"),
      details: { reason: "ok", keyPrefix: inject("keys").valid.slice(0, 12), clientIp: "203.0.113.7" },
    });
    expect(byRequest(requestIds[1] ?? "")).toMatchObject({
      action: "auth.failure",
      success: false,
      tenantId: null,
      details: { reason: "unknown_key", keyPrefix: "sk-sy-ZZZZZZ", clientIp: "203.0.113.8" },
    });
    expect(rows.some((r) => (r.details as { reason?: string }).reason === "tenant_suspended")).toBe(true);
    // No row ever holds a full key.
    expect(JSON.stringify(rows)).not.toContain(inject("keys").valid);
  });
});
