import { createApp, log } from "./app.ts";
import { runScheduled } from "./jobs/scheduled.ts";

/** The Switchyard edge worker. */
const app = createApp();

export default {
  fetch: app.fetch,
  scheduled(controller, env, ctx) {
    ctx.waitUntil(runScheduled(env, log, controller.cron).catch((err: unknown) => log("scheduled_failed", { error: String(err) })));
  },
} satisfies ExportedHandler<Env>;
