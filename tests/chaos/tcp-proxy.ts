/**
 * A TCP proxy on loopback that a chaos scenario can cut: the stand-in for a dependency going down
 * (Redis, Postgres) or for a network partition (gateway and one backplane), without touching the
 * machine's shared servers or needing network namespaces.
 */
import { createServer, connect, type AddressInfo, type Server, type Socket } from "node:net";

/**
 * `up`: bytes flow. `refused`: the dependency is down: open connections are reset and new ones are
 * accepted and reset at once (what a client of a stopped server sees, without giving the port away).
 * `blackhole`: a partition: open connections stop carrying bytes in either direction and new ones are
 * accepted and never answered; nothing is reset, so callers wait for their own deadlines.
 */
export type ProxyMode = "up" | "refused" | "blackhole";

interface Pair {
  client: Socket;
  upstream: Socket | null;
}

/** A cuttable proxy to `target()` (read at each new connection, so the target may move). `close()` is safe to call twice. */
export class TcpProxy {
  readonly port: number;
  private mode: ProxyMode = "up";
  private readonly server: Server;
  private readonly pairs = new Set<Pair>();
  private closing: Promise<void> | null = null;

  private constructor(server: Server) {
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
  }

  /** Listens on host:port (0 = a free port) and forwards to the target's port on the same host. */
  static async start(opts: { host?: string; port?: number; target: () => number }): Promise<TcpProxy> {
    const host = opts.host ?? "127.0.0.1";
    // The server's handler needs the proxy, which needs the listening server.
    const made: { proxy?: TcpProxy } = {};
    const server = createServer((client) => made.proxy?.accept(client, host, opts.target));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(opts.port ?? 0, host, () => resolve());
    });
    made.proxy = new TcpProxy(server);
    return made.proxy;
  }

  /** The current mode. */
  get state(): ProxyMode {
    return this.mode;
  }

  /** Connections open now (held ones in a blackhole included). */
  get connections(): number {
    return this.pairs.size;
  }

  /**
   * Switches mode. Going `refused` resets every open connection. Leaving `blackhole` resets the
   * connections it held: a partition that heals does not bring back TCP sessions whose peers gave
   * up meanwhile, and resetting them is what their keep-alive or retransmission timeout would do.
   */
  set(mode: ProxyMode): void {
    const previous = this.mode;
    this.mode = mode;
    if (mode === "refused" || (previous === "blackhole" && mode === "up")) {
      for (const pair of [...this.pairs]) this.drop(pair);
    } else if (mode === "blackhole") {
      for (const pair of this.pairs) {
        pair.client.pause();
        pair.upstream?.pause();
      }
    }
  }

  private accept(client: Socket, host: string, target: () => number): void {
    client.on("error", () => {});
    if (this.mode === "refused" || this.closing) {
      client.resetAndDestroy();
      return;
    }
    const pair: Pair = { client, upstream: null };
    this.pairs.add(pair);
    client.once("close", () => this.drop(pair));
    if (this.mode === "blackhole") {
      // Accepted by the kernel, never answered: what a caller sees across a partition. Its bytes are
      // read and dropped so its writes do not block on a full buffer.
      client.on("data", () => {});
      return;
    }
    const upstream = connect({ host, port: target() });
    pair.upstream = upstream;
    upstream.on("error", () => this.drop(pair));
    upstream.once("close", () => this.drop(pair));
    client.pipe(upstream);
    upstream.pipe(client);
  }

  private drop(pair: Pair): void {
    if (!this.pairs.delete(pair)) return;
    pair.client.resetAndDestroy();
    pair.upstream?.resetAndDestroy();
  }

  /** Stops listening and resets every connection. */
  close(): Promise<void> {
    return (this.closing ??= new Promise<void>((resolve) => {
      for (const pair of [...this.pairs]) this.drop(pair);
      this.server.close(() => resolve());
    }));
  }
}
