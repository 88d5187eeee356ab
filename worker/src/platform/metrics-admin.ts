import { Hono } from "hono";
import { ApiError } from "../errors.ts";
import { auditOutboxKey } from "../audit/outbox.ts";
import { fedattnOutboxKey } from "../fedattn/records.ts";
import { usageOutboxKey } from "../metering/flush.ts";
import { renderFleetGauges } from "./fleet-gauges.ts";
import { renderQueueGauges } from "../queue/gauges.ts";
import { flushCounters, renderCounters, type MetricsFormat } from "./metrics.ts";
import { backlog, deadLetterKey, replayDeadLetters, type DeadLetter } from "./outbox.ts";
import type { AdminEnv } from "../admin/auth.ts";

/**
 * `GET /admin/metrics` (operator only; docs/operations.md#metrics): the gateway's counters and
 * histograms summed over every isolate (platform/metrics.ts), the outboxes' backlog and dead letters
 * (Redis), and the fleet's gauges (fleet-gauges.ts: Postgres and Redis). A dependency that does not
 * answer leaves its part out of the scrape instead of failing it, and `switchyard_dependency_up`
 * says which: the outage an alert exists for must not take the metrics away.
 */
export const metricsRoutes = new Hono<AdminEnv>().get("/", async (c) => {
  if (c.get("actor").kind !== "operator") throw new ApiError("permission_denied", "Metrics are for the operator (ADMIN_TOKEN).");
  const deps = c.get("deps");
  const prefix = deps.settings.redisPrefix;
  const redis = deps.redis;
  // OpenMetrics (with exemplars) when the scraper asks for it, as Prometheus does when exemplar storage is on.
  const format: MetricsFormat = (c.req.header("accept") ?? "").includes("application/openmetrics-text") ? "openmetrics" : "prometheus";
  await flushCounters(redis, prefix);
  const fromRedis = Promise.all([
    renderCounters(redis, prefix, format),
    backlog(redis, usageOutboxKey(prefix)),
    backlog(redis, auditOutboxKey(prefix)),
    backlog(redis, fedattnOutboxKey(prefix)),
    redis.llen(deadLetterKey(usageOutboxKey(prefix))),
    redis.llen(deadLetterKey(auditOutboxKey(prefix))),
    redis.llen(deadLetterKey(fedattnOutboxKey(prefix))),
  ]).then(
    ([counters, usage, audit, fedattn, usageDead, auditDead, fedattnDead]) =>
      counters +
      [
        "# HELP switchyard_outbox_backlog Events queued in Redis and not yet written to Postgres by the scheduled job.",
        "# TYPE switchyard_outbox_backlog gauge",
        `switchyard_outbox_backlog{queue="usage"} ${usage}`,
        `switchyard_outbox_backlog{queue="audit"} ${audit}`,
        `switchyard_outbox_backlog{queue="fedattn"} ${fedattn}`,
        "# HELP switchyard_outbox_dead_letters Events the database refused on their own, kept in Redis; see GET /admin/outbox.",
        "# TYPE switchyard_outbox_dead_letters gauge",
        `switchyard_outbox_dead_letters{queue="usage"} ${usageDead}`,
        `switchyard_outbox_dead_letters{queue="audit"} ${auditDead}`,
        `switchyard_outbox_dead_letters{queue="fedattn"} ${fedattnDead}`,
        "",
      ].join("\n"),
    (err: unknown) => {
      deps.log("metrics_redis_unavailable", { error: String(err) });
      return null;
    },
  );
  const [redisText, fleet, queues] = await Promise.all([fromRedis, renderFleetGauges(c), renderQueueGauges(c).catch(() => "")]);
  const up = [
    "# HELP switchyard_dependency_up 1 when this scrape could read the dependency (redis: counters, outboxes, live node state; postgres: the node registry), 0 when it did not answer in time.",
    "# TYPE switchyard_dependency_up gauge",
    `switchyard_dependency_up{dependency="redis"} ${redisText !== null && fleet.liveOk ? 1 : 0}`,
    `switchyard_dependency_up{dependency="postgres"} ${fleet.registryOk ? 1 : 0}`,
    "",
  ].join("\n");
  if (format === "openmetrics") {
    return c.text(`${redisText ?? ""}${fleet.text}${queues}${up}# EOF\n`, 200, { "content-type": "application/openmetrics-text; version=1.0.0; charset=utf-8" });
  }
  return c.text(`${redisText ?? ""}${fleet.text}${queues}${up}`, 200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" });
});

const QUEUES = { usage: usageOutboxKey, audit: auditOutboxKey, fedattn: fedattnOutboxKey } as const;

function queueKey(c: { req: { param(name: "queue"): string }; get(key: "deps"): AdminEnv["Variables"]["deps"] }): string {
  const name = c.req.param("queue");
  const key = QUEUES[name as keyof typeof QUEUES];
  if (!key) throw new ApiError("not_found", `No queue ${name}; the queues are usage, audit and fedattn.`);
  return key(c.get("deps").settings.redisPrefix);
}

/**
 * `/admin/outbox` (operator only): the queues of the scheduled job, their backlog and their dead
 * letters (events the database refused on their own, platform/outbox.ts). `GET /admin/outbox/:queue`
 * shows the oldest dead letters with the error; `POST /admin/outbox/:queue/replay` puts them all
 * back in the queue once the cause is fixed.
 */
export const outboxRoutes = new Hono<AdminEnv>()
  .use(async (c, next) => {
    if (c.get("actor").kind !== "operator") throw new ApiError("permission_denied", "The event queues are for the operator (ADMIN_TOKEN).");
    await next();
  })
  .get("/", async (c) => {
    const queues = await Promise.all(
      Object.entries(QUEUES).map(async ([name, keyOf]) => {
        const key = keyOf(c.get("deps").settings.redisPrefix);
        const [waiting, dead] = await Promise.all([backlog(c.get("deps").redis, key), c.get("deps").redis.llen(deadLetterKey(key))]);
        return { queue: name, backlog: waiting, dead_letters: dead };
      }),
    );
    return c.json({ object: "list", data: queues });
  })
  .get("/:queue", async (c) => {
    const key = queueKey(c);
    const raw = await c.get("deps").redis.lrange<DeadLetter | string>(deadLetterKey(key), -100, -1);
    const letters = raw.map((r) => (typeof r === "string" ? (JSON.parse(r) as DeadLetter) : r)).reverse();
    return c.json({ object: "list", queue: c.req.param("queue"), backlog: await backlog(c.get("deps").redis, key), data: letters });
  })
  .post("/:queue/replay", async (c) => {
    const replayed = await replayDeadLetters(c.get("deps").redis, queueKey(c));
    c.get("deps").log("outbox_replayed", { queue: c.req.param("queue"), replayed });
    return c.json({ queue: c.req.param("queue"), replayed });
  });
