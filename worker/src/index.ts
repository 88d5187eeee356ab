import { createApp, log } from "./app.ts";
import { runScheduled } from "./jobs/scheduled.ts";
import { depsFrom } from "./platform/deps.ts";
import { countEvent, flushCounters } from "./platform/metrics.ts";

export { FedattnSession } from "./fedattn/session.ts";
export { FedattnIndex } from "./fedattn/index-object.ts";
export { EdgeQueue } from "./queue/edge-queue.ts";

/** The Switchyard edge worker. */
const app = createApp();

export default {
  fetch: app.fetch,
  scheduled(controller, env, ctx) {
    const deps = depsFrom(env, (p) => ctx.waitUntil(p), log);
    ctx.waitUntil(
      runScheduled(deps, controller.cron)
        .then(
          () => countEvent("switchyard_scheduled_runs_total", { result: "ok" }),
          (err: unknown) => {
            countEvent("switchyard_scheduled_runs_total", { result: "failed" });
            log("scheduled_failed", { error: String(err) });
          },
        )
        // Counted after the run's own flush: sent now (kept for the next flush if Redis fails).
        .then(() => flushCounters(deps.redis, deps.settings.redisPrefix)),
    );
  },
} satisfies ExportedHandler<Env>;
