import { createApp } from "./app.ts";

/** The Switchyard edge worker. */
const app = createApp();

export default {
  fetch: app.fetch,
} satisfies ExportedHandler<Env>;
