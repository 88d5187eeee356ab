import { once } from "node:events";
import { createServer } from "node:http";
import { connect, type AddressInfo } from "node:net";
import type { neonConfig as NeonConfig } from "@neondatabase/serverless";
import { WebSocketServer, type WebSocket } from "ws";

// A local stand-in for neondatabase/wsproxy: the Neon serverless driver speaks the Postgres wire protocol
// inside WebSocket frames; this pipes those frames to a TCP Postgres (wire-formats.md §5).

export interface NeonWsPipe {
  readonly port: number;
  /** "127.0.0.1:<port>/v2", without protocol, as neonConfig.wsProxy expects. */
  readonly wsProxy: string;
  /** Database sessions opened through the pipe so far (tests use it to prove a path never touched Postgres). */
  readonly connections: () => number;
  /** Sessions open now (WebSocket accepted, not yet closed); a driver that never lets go shows up here. */
  readonly open: () => number;
  close(): Promise<void>;
}

// Unread bytes a side may hold before the other side is paused (backpressure).
const HIGH_WATER = 1 << 20;

/** Starts a WebSocket-to-TCP pipe accepting `/v1` and `/v2?address=host:port` for allowed hosts only. */
export async function startNeonWsPipe(opts: { host?: string; port?: number; allowedHosts?: string[] } = {}): Promise<NeonWsPipe> {
  const host = opts.host ?? "127.0.0.1";
  const allowed = new Set(opts.allowedHosts ?? ["127.0.0.1", "localhost"]);
  const server = createServer((_req, res) => res.writeHead(426).end("WebSocket upgrade required\n"));
  const wss = new WebSocketServer({ noServer: true });
  let connections = 0;
  let open = 0;

  server.on("upgrade", (req, socket, head) => {
    const url = new URL(req.url ?? "/", "ws://pipe");
    const target = url.pathname === "/v1" || url.pathname === "/v2" ? parseAddress(url.searchParams.get("address")) : undefined;
    wss.handleUpgrade(req, socket, head, (ws) => {
      if (target === undefined) return refuse(ws, "the pipe expects /v2?address=host:port");
      if (!allowed.has(target.host)) return refuse(ws, `the pipe does not allow address ${target.host}`);
      connections++;
      open++;
      ws.once("close", () => open--);
      pipe(ws, target.host, target.port);
    });
  });

  server.listen(opts.port ?? 0, host);
  await once(server, "listening");
  const port = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;
  return {
    port,
    wsProxy: `${host.includes(":") ? `[${host}]` : host}:${port}/v2`,
    connections: () => connections,
    open: () => open,
    close: () => {
      closing ??= (async () => {
        const closed = once(server, "close");
        server.close();
        server.closeAllConnections();
        for (const ws of wss.clients) ws.terminate();
        wss.close();
        await closed;
      })();
      return closing;
    },
  };
}

/** neonConfig settings for a local pipe, shared by Node code and documented for the worker */
export function configureNeonForLocalPipe(neonConfig: typeof NeonConfig, wsProxy: string, opts: { webSocketConstructor?: unknown } = {}): void {
  neonConfig.wsProxy = (host, port) => `${wsProxy}?address=${host}:${port}`;
  neonConfig.useSecureWebSocket = false;
  // The default "password" pipelining sends the password before the server asks; trust and SCRAM auth reject that.
  neonConfig.pipelineConnect = false;
  neonConfig.pipelineTLS = false;
  neonConfig.forceDisablePgSSL = true;
  // Needed in Node (no global WebSocket on older versions); Workers have one built in.
  if (opts.webSocketConstructor !== undefined) {
    neonConfig.webSocketConstructor = opts.webSocketConstructor as (typeof NeonConfig)["webSocketConstructor"];
  }
}

function pipe(ws: WebSocket, host: string, port: number): void {
  const tcp = connect({ host, port });
  tcp.setNoDelay(true);
  // With ws's default binaryType ("nodebuffer") every message arrives as one Buffer.
  ws.on("message", (data: Buffer) => {
    if (!tcp.write(data)) ws.pause();
  });
  tcp.on("drain", () => ws.resume());
  tcp.on("data", (chunk) => {
    ws.send(chunk, { binary: true }, () => {
      if (ws.bufferedAmount < HIGH_WATER) tcp.resume();
    });
    if (ws.bufferedAmount >= HIGH_WATER) tcp.pause();
  });
  tcp.on("error", (err) => {
    // Before the upstream answered, the driver is still waiting for a Postgres message: give it one.
    if (tcp.bytesRead === 0) refuse(ws, `the pipe could not reach ${host}:${port}: ${err.message}`);
    else ws.close(1011, closeReason(`upstream ${host}:${port}: ${err.message}`));
  });
  tcp.on("close", (hadError) => {
    if (!hadError) ws.close(); // after an error the "error" handler has closed it with the reason
  });
  ws.on("error", () => tcp.destroy());
  ws.on("close", () => tcp.end());
}

/**
 * Refuses with a Postgres ErrorResponse before the close frame: the driver reports a close or an HTTP 403
 * only as "Connection terminated unexpectedly", but shows a server error's message as it is.
 */
function refuse(ws: WebSocket, message: string): void {
  const fields = Buffer.from(`SFATAL\0VFATAL\0C08004\0M${message}\0\0`);
  const header = Buffer.alloc(5);
  header.write("E", 0);
  header.writeInt32BE(fields.length + 4, 1);
  ws.send(Buffer.concat([header, fields]), () => ws.close(1008, closeReason(message)));
}

/** A close reason may hold at most 123 bytes (RFC 6455 §5.5); ws throws on longer ones. */
function closeReason(text: string): string {
  let reason = text;
  while (Buffer.byteLength(reason) > 123) reason = reason.slice(0, -1);
  return reason;
}

function parseAddress(address: string | null): { host: string; port: number } | undefined {
  const match = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(address ?? "");
  const port = Number(match?.[2]);
  if (match?.[1] === undefined || !Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  return { host: match[1], port };
}
