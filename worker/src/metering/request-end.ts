import type { AuditEvent } from "../audit/outbox.ts";
import { auditOutboxKey } from "../audit/outbox.ts";
import type { Admission } from "../limits/admission.ts";
import { WriteBatch } from "../limits/write-batch.ts";
import type { Deps, RequestDeps } from "../platform/deps.ts";
import { appendCounters, countEvent, observe } from "../platform/metrics.ts";
import { isolateSnapshot } from "../platform/hot-state.ts";
import { hasReservation, queueTokens, takeStreamed, usageWindow } from "../routing/reservation-usage.ts";
import { ensureUsageDelivered } from "./deliver.ts";
import { usageOutboxKey } from "./flush.ts";
import type { UsageRow } from "./record.ts";
import type { ConversationRecord } from "../conversations/capture.ts";
import { conversationOutboxKey } from "../conversations/flush.ts";

/** Requests' end writes waiting to go out together, and the usage rows among them. */
interface EndBatch {
  writes: WriteBatch;
  rows: UsageRow[];
  conversations: ConversationRecord[];
  /** Other outbox entries (a council vote's record), queued once more if the batch fails. */
  extras: { key: string; value: string }[];
}

/** Requests that end within this long of each other share one round trip… */
const COALESCE_MS = 5;
/** …of at most this many requests. */
const MAX_REQUESTS_PER_BATCH = 64;

let open: EndBatch | null = null;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Everything a served request's end writes (waitUntil): the budget settlement (a request that
 * produced nothing gives its whole reservation back), the slot release, the usage event (the
 * durable buffer the scheduled job writes to Postgres, flush.ts), the authentication's audit event
 * and the gateway's counters (platform/metrics.ts). The requests of an isolate that end within
 * COALESCE_MS of each other share one Redis round trip: each adds its writes to the open batch, and
 * the request that opened it sends it COALESCE_MS later (so every write goes out from a request
 * that is still running, and one subrequest serves many requests under load). If Redis
 * fails the batch, every usage event in it still reaches Postgres (deliver.ts); the budget
 * settlements are lost (a lease's record or a direct reservation keeps the whole amount) and a
 * direct slot waits for its expiry (docs/limits.md, "When Redis or Postgres fails").
 * An audited environment's conversation record (conversations/, docs/audit.md) goes in the same
 * batch; if Redis fails it, the record is queued once more and otherwise logged as lost.
 */
export async function settleRequest(deps: RequestDeps, admission: Admission, row: UsageRow, authAudit: AuditEvent | null, conversation: ConversationRecord | null = null): Promise<void> {
  return settleRequests(deps, admission, [row], authAudit, conversation);
}

/**
 * settleRequest for one admission that covered several engine calls (a council vote's fan-out,
 * council/): the budgets settle to the calls' summed cost, and each call has its usage row. `extra`
 * are more outbox entries pushed in the same batch (the vote's record).
 */
export async function settleRequests(
  deps: RequestDeps,
  admission: Admission,
  rows: UsageRow[],
  authAudit: AuditEvent | null,
  conversation: ConversationRecord | null = null,
  extra: { key: string; value: string }[] = [],
): Promise<void> {
  const prefix = deps.settings.redisPrefix;
  // The request's trace id becomes its histogram buckets' exemplar when the trace is exported (tracing/).
  const exemplar = deps.trace?.exported ? deps.trace.traceId : null;
  for (const row of rows) {
    logEnd(deps, row);
    observeRow(row, exemplar);
  }
  let used = 0;
  let spend = 0;
  let calls = 0;
  for (const row of rows) {
    const tokens = (row.promptTokens ?? 0) + (row.completionTokens ?? 0);
    used += tokens;
    spend += row.costMicros ?? 0;
    if (tokens > 0 || (row.costMicros ?? 0) > 0) calls++;
  }
  // No await from here to the last push: a batch being sent takes no more writes.
  const opener = open === null;
  const batch = (open ??= { writes: new WriteBatch(deps.redis.pipeline()), rows: [], conversations: [], extras: [] });
  // Audio is billed by its duration: a transcription may cost money with no tokens reported.
  const finished = admission.finish(calls > 0 ? { tokens: used, spend, requests: calls } : null, batch.writes);
  for (const row of rows) batch.writes.pipe.lpush(usageOutboxKey(prefix), JSON.stringify(row));
  measureReserved(deps, batch.writes, rows);
  for (const e of extra) batch.writes.pipe.lpush(e.key, e.value);
  batch.extras.push(...extra);
  if (authAudit) batch.writes.pipe.lpush(auditOutboxKey(prefix), JSON.stringify(authAudit));
  if (conversation) {
    batch.writes.pipe.lpush(conversationOutboxKey(prefix), JSON.stringify(conversation));
    batch.conversations.push(conversation);
  }
  batch.rows.push(...rows);
  await finished;
  // The request that opened the batch sends it after COALESCE_MS (one timer per batch, not per
  // request); a full batch goes at once, from the request that filled it.
  if (batch.rows.length >= MAX_REQUESTS_PER_BATCH) {
    if (open === batch) await sendEndBatch(deps, batch);
    return;
  }
  if (!opener) return;
  await sleep(COALESCE_MS);
  if (open === batch) await sendEndBatch(deps, batch);
}

/**
 * A reserving tenant's tokens served by a node (not a cache hit) go to its reserved-throughput
 * window (routing/reservation-usage.ts), less what its stream already counted while it ran.
 */
function measureReserved(deps: Deps, writes: WriteBatch, rows: UsageRow[]): void {
  const snapshot = isolateSnapshot();
  const now = Date.now();
  for (const row of rows) {
    const streamed = takeStreamed(row.id);
    if (row.nodeId === null || !hasReservation(snapshot, row.tenantId, row.model)) continue;
    const tokens = (row.promptTokens ?? 0) + (row.completionTokens ?? 0) - streamed;
    queueTokens(writes.pipe, deps.settings.redisPrefix, usageWindow(deps.settings.reservationWindowSeconds), row.tenantId, row.model, tokens, now);
  }
}

/** A served request's durations and tokens in the gateway's metrics (platform/metrics.ts). */
function observeRow(row: UsageRow, traceId: string | null): void {
  const route = { route: row.endpoint };
  observe("switchyard_request_duration_seconds", row.latencyMs / 1000, route, traceId);
  if (row.streamed && row.ttftMs !== null && row.ttftMs !== undefined) observe("switchyard_time_to_first_token_seconds", row.ttftMs / 1000, route, traceId);
  if (row.promptTokens) countEvent("switchyard_tokens_total", { direction: "in", model: row.model }, row.promptTokens);
  if (row.completionTokens) countEvent("switchyard_tokens_total", { direction: "out", model: row.model }, row.completionTokens);
}

/** The log line of a request's end, for the ones an operator would look into. */
function logEnd(deps: RequestDeps, row: UsageRow): void {
  // Every request has its usage record; the log line is for the ones an operator would look into
  // (a log line per request was about a tenth of the worker's CPU per request, bench/).
  if (row.status !== "ok" || deps.settings.logRequests === "all") deps.log("request_done", {
    requestId: row.id,
    tenantId: row.tenantId,
    model: row.model,
    node: row.nodeId,
    status: row.status,
    httpStatus: row.httpStatus,
    errorCode: row.errorCode,
    promptTokens: row.promptTokens,
    completionTokens: row.completionTokens,
    ttftMs: row.ttftMs,
    latencyMs: row.latencyMs,
  });
}

async function sendEndBatch(deps: Deps, batch: EndBatch): Promise<void> {
  open = null;
  const restoreCounters = appendCounters(batch.writes.pipe, deps.settings.redisPrefix);
  try {
    await batch.writes.exec(deps.redis);
  } catch (err) {
    restoreCounters();
    deps.log("request_end_writes_failed", { requests: batch.rows.map((r) => r.id), error: String(err) });
    await Promise.all([
      ...batch.rows.map((row) => ensureUsageDelivered(deps, row)),
      ...batch.conversations.map((record) => requeueConversation(deps, record)),
      ...batch.extras.map((e) => deps.redis.lpush(e.key, e.value).catch((e2: unknown) => deps.log("outbox_entry_lost", { key: e.key, error: String(e2) }))),
    ]);
  }
}

/** A conversation record whose end batch failed: queued once more, else logged (without its bodies) as lost. */
async function requeueConversation(deps: Deps, record: ConversationRecord): Promise<void> {
  try {
    await deps.redis.lpush(conversationOutboxKey(deps.settings.redisPrefix), JSON.stringify(record));
  } catch (err) {
    deps.log("conversation_unrecorded", { requestId: record.id, tenantId: record.tenantId, error: String(err) });
  }
}
