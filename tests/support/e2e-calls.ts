/**
 * What end-to-end tests ask of a running local stack: a request's usage row once the scheduled job
 * moved it to Postgres, and admin API calls with the stack's operator token.
 */
import { eq } from "drizzle-orm";
import type { NodeDb } from "../../dev/db.ts";
import type { Stack } from "../../dev/stack.ts";
import { usageRecords } from "../../schema/tables/index.ts";

/** The usage row of request `requestId`, running the stack's scheduled job until it is in Postgres. */
export async function usageRowOf(stack: Stack, db: NodeDb, requestId: string | null | undefined, timeoutMs = 10_000): Promise<typeof usageRecords.$inferSelect> {
  if (!requestId) throw new Error("no request id");
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await stack.runScheduled();
    const [row] = await db.db.select().from(usageRecords).where(eq(usageRecords.id, requestId));
    if (row) return row;
    if (Date.now() > deadline) throw new Error(`no usage record for ${requestId}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** An admin API call with the stack's operator token; throws with the status and body unless it succeeded. */
export async function adminJson<T = unknown>(stack: Stack, method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${stack.gatewayUrl}/admin${path}`, {
    method,
    headers: { authorization: `Bearer ${stack.adminToken}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = (await res.json()) as T;
  if (!res.ok) throw new Error(`${method} /admin${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/** A key of a new tenant (for tests that exhaust its limits or check isolation). */
export async function newTenantKey(stack: Stack, name: string): Promise<{ key: string; keyId: string; tenantId: string }> {
  const tenant = await adminJson<{ id: string }>(stack, "POST", "/tenants", { name: `${name}-${Math.random().toString(16).slice(2, 8)}` });
  const env = await adminJson<{ id: string }>(stack, "POST", "/environments", { tenant_id: tenant.id, name: "prod" });
  const key = await adminJson<{ id: string; key: string }>(stack, "POST", "/keys", { environment_id: env.id, name: "k" });
  return { key: key.key, keyId: key.id, tenantId: tenant.id };
}
