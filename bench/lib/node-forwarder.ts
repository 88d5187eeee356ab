/**
 * The baseline of the backplane hop: a bare Hono app on Node (`@hono/node-server`) that forwards
 * every request to one upstream (method, path and query, headers minus hop-by-hop, streamed body)
 * and streams the answer back as it came. The backplane's CPU per request is compared with this
 * one's (docs/performance.md). Run as its own process so /proc can tell its CPU apart:
 *
 *   node bench/lib/node-forwarder.ts --upstream http://127.0.0.1:8000 [--host 127.0.0.1] [--port 0]
 *
 * When it listens it prints one JSON line, `{"listening":"http://host:port"}`.
 */
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import { proxy } from "hono/proxy";
import { parseArgs } from "node:util";

/** The forwarder app: every request goes to `upstream` (an origin such as http://127.0.0.1:8000). */
export function forwarderApp(upstream: string): Hono {
  const origin = upstream.replace(/\/+$/, "");
  const app = new Hono();
  // hono/proxy is what a Hono user would write (and what the workerd baseline uses): it drops
  // hop-by-hop headers both ways and pipes both bodies without reading them.
  app.all("*", (c) => {
    const url = new URL(c.req.url);
    return proxy(origin + url.pathname + url.search, c.req.raw);
  });
  return app;
}

function main(): void {
  const { values } = parseArgs({
    options: { upstream: { type: "string" }, host: { type: "string", default: "127.0.0.1" }, port: { type: "string", default: "0" } },
  });
  if (values.upstream === undefined || !/^https?:\/\//.test(values.upstream)) {
    process.stderr.write("node-forwarder: --upstream http://host:port is required\n");
    process.exit(2);
  }
  const host = values.host;
  const server = serve({ fetch: forwarderApp(values.upstream).fetch, hostname: host, port: Number(values.port) }, (info) => {
    const authority = host.includes(":") ? `[${host}]` : host;
    process.stdout.write(`${JSON.stringify({ listening: `http://${authority}:${info.port}` })}\n`);
  });
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.once(signal, () => {
      server.close(() => process.exit(0));
      // Keep-alive connections would hold close() open; nothing here needs a graceful drain.
      setTimeout(() => process.exit(0), 1_000).unref();
    });
  }
}

if (import.meta.main) main();
