import { flushAuditOutbox } from "../audit/outbox.ts";
import { withDb } from "../platform/db.ts";
import { flushCounters } from "../platform/metrics.ts";
import { redisFrom } from "../platform/redis.ts";
import { settingsFrom } from "../settings.ts";

/** Batches per run: bounds one run's work; what is left waits for the next minute. */
const MAX_BATCHES = 20;

/**
 * The Cron Trigger (every minute, wrangler.toml `[triggers]`): flushes this isolate's pending
 * counters, and moves queued audit events from Redis to Postgres in batches over one connection.
 */
export async function runScheduled(env: Env, log: (event: string, fields: Record<string, unknown>) => void): Promise<void> {
  const settings = settingsFrom(env);
  const redis = redisFrom(env.UPSTASH_REDIS_REST_URL, env.UPSTASH_REDIS_REST_TOKEN);
  await flushCounters(redis, settings.redisPrefix);
  await withDb(env.DATABASE_URL, settings.neonWsProxy, async (db) => {
    let written = 0;
    for (let i = 0; i < MAX_BATCHES; i++) {
      const n = await flushAuditOutbox(redis, settings.redisPrefix, db);
      written += n;
      if (n === 0) break;
    }
    if (written > 0) log("audit_flushed", { written });
  });
}
