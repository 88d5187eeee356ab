/**
 * The baseline of the worker hop: a bare Hono app on workerd that forwards every request to the
 * UPSTREAM text binding (method, path and query, headers, streamed body) and streams the answer back
 * as it came. The gateway's CPU per request is compared with this one's (docs/performance.md).
 */
import { Hono } from "hono";
import { proxy } from "hono/proxy";

/** The forwarder's bindings. */
interface Bindings {
  /** Origin to forward to, e.g. "http://127.0.0.1:8000". */
  UPSTREAM: string;
}

const app = new Hono<{ Bindings: Bindings }>();

// hono/proxy is what a Hono user would write: it drops hop-by-hop headers both ways and pipes both
// bodies without reading them.
app.all("*", (c) => {
  const url = new URL(c.req.url);
  return proxy(new URL(url.pathname + url.search, c.env.UPSTREAM), c.req.raw);
});

export default app;
