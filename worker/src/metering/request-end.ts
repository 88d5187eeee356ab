import type { AuditEvent } from "../audit/outbox.ts";
import { auditOutboxKey } from "../audit/outbox.ts";
import type { Admission } from "../limits/admission.ts";
import type { RequestDeps } from "../platform/deps.ts";
import { appendCounters } from "../platform/metrics.ts";
import { ensureUsageDelivered } from "./deliver.ts";
import { usageOutboxKey } from "./flush.ts";
import type { UsageRow } from "./record.ts";

/**
 * Everything a served request's end writes, in one Redis round trip (waitUntil): the budget
 * settlement (a request that produced nothing gives its whole reservation back), the concurrency
 * release, the gateway's counters (platform/metrics.ts), the usage event (the durable buffer the scheduled job writes to Postgres, flush.ts) and
 * the authentication's audit event. If Redis fails it, the usage event still reaches Postgres
 * (deliver.ts); the budget then keeps the whole reservation and the slot waits for its lease expiry
 * (docs/limits.md, "When Redis or Postgres fails").
 */
export async function settleRequest(deps: RequestDeps, admission: Admission, row: UsageRow, authAudit: AuditEvent | null): Promise<void> {
  const { redis, log } = deps;
  const prefix = deps.settings.redisPrefix;
  log("request_done", {
    requestId: row.id,
    tenantId: row.tenantId,
    model: row.model,
    node: row.nodeId,
    status: row.status,
    promptTokens: row.promptTokens,
    completionTokens: row.completionTokens,
    ttftMs: row.ttftMs,
    latencyMs: row.latencyMs,
  });
  const used = (row.promptTokens ?? 0) + (row.completionTokens ?? 0);
  const batch = redis.pipeline();
  await admission.finish(used > 0 ? { tokens: used, spend: row.costMicros ?? 0, requests: 1 } : null, batch);
  batch.lpush(usageOutboxKey(prefix), JSON.stringify(row));
  if (authAudit) batch.lpush(auditOutboxKey(prefix), JSON.stringify(authAudit));
  const restoreCounters = appendCounters(batch, prefix);
  try {
    await batch.exec();
  } catch (err) {
    restoreCounters();
    log("request_end_writes_failed", { requestId: row.id, error: String(err) });
    await ensureUsageDelivered(deps, row);
  }
}
