/**
 * A TCP front for the embedded Postgres (PGlite behind pglite-socket) that makes it behave like a
 * real server in the two ways the local stack depends on:
 *
 * - It closes a session when the client sends Terminate ('X'), as Postgres does. pglite-socket
 *   ignores Terminate and waits for the client to close, but the Neon driver never closes its
 *   WebSocket itself (@neondatabase/serverless 1.x: its Socket shim's `write(buf, cb)` takes the
 *   callback as the encoding, so pg's `write(Terminate, () => stream.end())` never calls end()).
 *   Against Neon or a real Postgres the server ends the session and the proxy closes the socket;
 *   against pglite-socket every Pool the worker opened stayed connected until the limit was hit.
 * - It admits at most `maxActive` sessions and queues the rest (up to `maxQueued`, each for at most
 *   `queueTimeoutMs`) instead of refusing them, so a burst waits rather than fails. Past the bound
 *   it answers with a Postgres ErrorResponse (SQLSTATE 53300 too_many_connections).
 */
import { once } from "node:events";
import { connect, createServer, type AddressInfo, type Socket } from "node:net";

/** Sessions through the gate right now. */
export interface GateStats {
  /** Connected to the embedded Postgres. */
  active: number;
  /** Accepted and waiting for a free slot. */
  queued: number;
}

export interface PostgresGate {
  readonly port: number;
  stats(): GateStats;
  close(): Promise<void>;
}

export interface GateOptions {
  host: string;
  port: number;
  /** Where pglite-socket listens. */
  upstreamHost: string;
  upstreamPort: number;
  maxActive: number;
  maxQueued: number;
  queueTimeoutMs: number;
}

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const TERMINATE = "X".charCodeAt(0);

/**
 * Follows the frontend side of the wire protocol (startup packets, then typed messages) without
 * buffering bodies, to notice Terminate. https://www.postgresql.org/docs/current/protocol-message-formats.html
 */
export class TerminateWatch {
  private header = Buffer.alloc(0);
  private skip = 0;
  private startup = true;

  /** Feeds bytes the client sent; true once a Terminate message has been seen. */
  feed(chunk: Buffer): boolean {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - offset);
        this.skip -= n;
        offset += n;
        continue;
      }
      const need = (this.startup ? 8 : 5) - this.header.length;
      this.header = Buffer.concat([this.header, chunk.subarray(offset, offset + need)]);
      offset += Math.min(need, chunk.length - offset);
      if (this.header.length < (this.startup ? 8 : 5)) break;
      if (this.startup) {
        const length = this.header.readInt32BE(0);
        const code = this.header.readInt32BE(4);
        // SSL and GSS encryption requests are answered with one byte and followed by the real startup packet.
        if (code !== SSL_REQUEST && code !== GSSENC_REQUEST) this.startup = false;
        this.skip = Math.max(0, length - 8);
      } else {
        if (this.header[0] === TERMINATE) return true;
        this.skip = Math.max(0, this.header.readInt32BE(1) - 4);
      }
      this.header = Buffer.alloc(0);
    }
    return false;
  }
}

/** An ErrorResponse a driver shows as it is (a bare close reads "Connection terminated unexpectedly"). */
function errorResponse(code: string, message: string): Buffer {
  const fields = Buffer.from(`SFATAL\0VFATAL\0C${code}\0M${message}\0\0`);
  const header = Buffer.alloc(5);
  header.write("E", 0);
  header.writeInt32BE(fields.length + 4, 1);
  return Buffer.concat([header, fields]);
}

/** Starts the gate; `close()` is safe twice and ends every session. */
export async function startPostgresGate(opts: GateOptions): Promise<PostgresGate> {
  const sockets = new Set<Socket>();
  const waiting: { client: Socket; timer: NodeJS.Timeout }[] = [];
  let active = 0;

  const refuse = (client: Socket, message: string) => client.end(errorResponse("53300", message));

  const admitNext = () => {
    while (active < opts.maxActive) {
      const next = waiting.shift();
      if (!next) return;
      clearTimeout(next.timer);
      if (!next.client.destroyed) session(next.client);
    }
  };

  const session = (client: Socket) => {
    active++;
    const upstream = connect({ host: opts.upstreamHost, port: opts.upstreamPort });
    sockets.add(upstream);
    upstream.setNoDelay(true);
    const watch = new TerminateWatch();
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      active--;
      client.destroy();
      upstream.destroy();
      admitNext();
    };
    client.on("data", (chunk: Buffer) => {
      if (!upstream.write(chunk)) client.pause();
      // Postgres closes the connection after Terminate; so does the gate, once the message is passed on.
      if (watch.feed(chunk)) {
        upstream.end();
        client.end();
      }
    });
    upstream.on("drain", () => client.resume());
    upstream.on("data", (chunk: Buffer) => {
      if (!client.write(chunk)) upstream.pause();
    });
    client.on("drain", () => upstream.resume());
    client.on("close", release);
    upstream.on("close", release);
    upstream.on("error", () => {
      if (upstream.bytesRead === 0 && client.writable) client.end(errorResponse("08006", "the embedded Postgres is not answering"));
    });
    client.resume();
  };

  const server = createServer({ noDelay: true, pauseOnConnect: true }, (client) => {
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    client.on("error", () => {});
    if (active < opts.maxActive) return session(client);
    if (waiting.length >= opts.maxQueued) {
      refuse(client, `too many connections to the embedded Postgres (${active} open, ${waiting.length} waiting)`);
      return;
    }
    const entry = {
      client,
      timer: setTimeout(() => {
        const at = waiting.indexOf(entry);
        if (at >= 0) waiting.splice(at, 1);
        refuse(client, `waited ${opts.queueTimeoutMs} ms for a connection to the embedded Postgres (${active} open)`);
      }, opts.queueTimeoutMs),
    };
    waiting.push(entry);
    client.on("close", () => {
      const at = waiting.indexOf(entry);
      if (at < 0) return;
      waiting.splice(at, 1);
      clearTimeout(entry.timer);
    });
  });
  server.listen(opts.port, opts.host);
  await Promise.race([once(server, "listening"), once(server, "error").then(([err]) => Promise.reject(err as Error))]);
  let closing: Promise<void> | undefined;
  return {
    port: (server.address() as AddressInfo).port,
    stats: () => ({ active, queued: waiting.length }),
    close: () =>
      (closing ??= (async () => {
        const closed = once(server, "close");
        server.close();
        for (const { timer } of waiting.splice(0)) clearTimeout(timer);
        for (const socket of sockets) socket.destroy();
        await closed;
      })()),
  };
}
