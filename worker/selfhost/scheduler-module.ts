/**
 * The scheduler entrypoint of workerd.ts: how the serve process (and the benchmark) fire the
 * worker's `scheduled` handler under plain workerd, which runs no Cron Triggers by itself.
 */

/** File name of the generated main module. */
export const SCHEDULER_MODULE = "switchyard-scheduler.js";

// A main module that re-exports the bundle unchanged and adds a `scheduler` entrypoint that runs the
// worker's `scheduled` export. Named entrypoints of one worker share its isolate, so the job sees the
// same module state (isolate caches, pending counters) as a Cron Trigger in that isolate would.
// workerd's own dispatch (`Fetcher.scheduled()`, as Miniflare uses it) needs the experimental
// `service_binding_extra_handlers` flag, which only `--experimental` allows; a production gateway
// does not run with that. The token is written into this module (mode 0600) rather than bound, so
// the worker's `env` stays exactly wrangler.toml's.
/** The generated main module's source: the bundle's main module re-exported, plus the `scheduler` entrypoint guarded by `token`. */
export function schedulerModule(mainName: string, token: string): string {
  const target = JSON.stringify(`./${mainName}`);
  return `import worker from ${target};
export * from ${target};
export default worker;
const TOKEN = ${JSON.stringify(token)};
async function digest(text) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}
export const scheduler = {
  async fetch(request, env, ctx) {
    // Digests compared byte by byte: constant time whatever the lengths.
    const [given, wanted] = await Promise.all([digest(request.headers.get("authorization") ?? ""), digest("Bearer " + TOKEN)]);
    let diff = 0;
    for (let i = 0; i < wanted.length; i++) diff |= given[i] ^ wanted[i];
    if (diff !== 0) return new Response("unauthorized\\n", { status: 401 });
    if (request.method !== "POST") return new Response("POST only\\n", { status: 405 });
    const url = new URL(request.url);
    const cron = url.searchParams.get("cron") ?? "* * * * *";
    const scheduledTime = Number(url.searchParams.get("time") ?? Date.now());
    const pending = [];
    const inner = { waitUntil: (p) => void pending.push(p), passThroughOnException: () => {}, props: ctx.props };
    let noRetry = false;
    const controller = { cron, scheduledTime, type: "scheduled", noRetry: () => void (noRetry = true) };
    try {
      await worker.scheduled(controller, env, inner);
      // waitUntil work may add more waitUntil work.
      for (let done = 0; done < pending.length; ) {
        const batch = pending.slice(done);
        done = pending.length;
        const settled = await Promise.allSettled(batch);
        const failed = settled.find((s) => s.status === "rejected");
        if (failed) return Response.json({ outcome: "exception", noRetry, error: String(failed.reason) }, { status: 500 });
      }
      return Response.json({ outcome: "ok", noRetry });
    } catch (err) {
      return Response.json({ outcome: "exception", noRetry, error: String((err && err.stack) || err) }, { status: 500 });
    }
  },
};
`;
}
