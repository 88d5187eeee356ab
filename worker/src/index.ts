import { createApp, log } from "./app.ts";
import { runScheduled } from "./jobs/scheduled.ts";
import { depsFrom } from "./platform/deps.ts";

export { FedattnSession } from "./fedattn/session.ts";
export { FedattnIndex } from "./fedattn/index-object.ts";

/** The Switchyard edge worker. */
const app = createApp();

export default {
  fetch: app.fetch,
  scheduled(controller, env, ctx) {
    const deps = depsFrom(env, (p) => ctx.waitUntil(p), log);
    ctx.waitUntil(runScheduled(deps, controller.cron).catch((err: unknown) => log("scheduled_failed", { error: String(err) })));
  },
} satisfies ExportedHandler<Env>;
