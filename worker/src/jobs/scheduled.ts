import { flushAuditOutbox } from "../audit/outbox.ts";
import { flushUsage } from "../metering/flush.ts";
import { withDb } from "../platform/db.ts";
import { flushCounters } from "../platform/metrics.ts";
import { redisFrom } from "../platform/redis.ts";
import { settingsFrom } from "../settings.ts";

/**
 * The Cron Trigger (every minute, wrangler.toml `[triggers]`): flushes this isolate's pending
 * counters, then moves queued usage events (records and hourly rollups) and audit events from Redis
 * to Postgres in batches over one connection. A failure leaves the events for the next run.
 */
export async function runScheduled(env: Env, log: (event: string, fields: Record<string, unknown>) => void): Promise<void> {
  const settings = settingsFrom(env);
  const redis = redisFrom(env.UPSTASH_REDIS_REST_URL, env.UPSTASH_REDIS_REST_TOKEN);
  await flushCounters(redis, settings.redisPrefix);
  await withDb(env.DATABASE_URL, settings.neonWsProxy, async (db) => {
    const usage = await flushUsage(redis, settings.redisPrefix, db);
    const audit = await flushAuditOutbox(redis, settings.redisPrefix, db);
    if (usage > 0 || audit > 0) log("outbox_flushed", { usage, audit });
  });
}
