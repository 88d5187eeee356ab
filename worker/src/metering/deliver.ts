import type { Deps } from "../platform/deps.ts";
import { usageOutboxKey, writeUsageBatch } from "./flush.ts";
import type { UsageRow } from "./record.ts";

/** Pauses between delivery attempts: the whole ladder stays well inside waitUntil's 30 s. */
const RETRY_DELAYS_MS = [250, 1_000, 3_000, 6_000];

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Makes sure a served request's usage event reaches Postgres after the request's end batch (which
 * normally queues it in Redis, routes/proxy.ts) failed. Redis and Postgres are tried in turn, with
 * pauses, for about ten seconds: the event is queued in Redis again, or else written straight to
 * Postgres with the same idempotent write the scheduled flush uses (so an event that did reach
 * Redis after all is still recorded exactly once). Only when both stayed down the whole time is the
 * event logged in full as `usage_event_unrecorded`, for an operator to replay (docs/metering.md).
 */
export async function ensureUsageDelivered(deps: Deps, row: UsageRow): Promise<"redis" | "postgres" | "lost"> {
  const json = JSON.stringify(row);
  for (const delay of RETRY_DELAYS_MS) {
    await sleep(delay);
    try {
      await deps.redis.lpush(usageOutboxKey(deps.settings.redisPrefix), json);
      return "redis";
    } catch {
      // Redis still down: try Postgres directly.
    }
    try {
      await deps.db((db) => writeUsageBatch(db, [JSON.parse(json) as Parameters<typeof writeUsageBatch>[1][number]]));
      deps.log("usage_written_directly", { requestId: row.id });
      return "postgres";
    } catch (err) {
      deps.log("usage_delivery_retry", { requestId: row.id, error: String(err) });
    }
  }
  deps.log("usage_event_unrecorded", { requestId: row.id, row: json });
  return "lost";
}
