import { sql } from "drizzle-orm";
import type { Context } from "hono";
import type { AppEnv } from "../env.ts";

/**
 * `GET /health`: liveness, no dependencies touched. `GET /health?deep=1`: also pings Redis and
 * Postgres and answers 503 naming the one that failed.
 */
export async function health(c: Context<AppEnv>): Promise<Response> {
  if (c.req.query("deep") === undefined) return c.json({ status: "ok" });
  const [redis, postgres] = await Promise.all([
    c.get("deps").redis.ping().then(
      () => "ok",
      (err: unknown) => `error: ${String(err)}`,
    ),
    c.get("deps").db((db) => db.execute(sql`select 1`)).then(
      () => "ok",
      (err: unknown) => `error: ${String(err)}`,
    ),
  ]);
  const ok = redis === "ok" && postgres === "ok";
  return c.json({ status: ok ? "ok" : "degraded", checks: { redis, postgres } }, ok ? 200 : 503);
}
