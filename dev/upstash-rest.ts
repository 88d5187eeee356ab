import { createHash, timingSafeEqual } from "node:crypto";
import { once } from "node:events";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { checkRedis, redactUrl } from "./redis.ts";

// Local stand-in for Upstash's REST API (https://upstash.com/docs/redis/features/restapi), spoken to by
// @upstash/redis and @upstash/ratelimit. See docs in /work/shared/reference/wire-formats.md §6.

export interface UpstashRestAdapter {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

type Outcome = { result: unknown } | { error: string };

/** An error answered as `{"error": message}` with an HTTP status. */
class RestError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

// Commands that change per-connection state would corrupt the shared connection for every other request.
const CONNECTION_STATE = new Set([
  "AUTH", "CLIENT", "DISCARD", "EXEC", "HELLO", "MONITOR", "MULTI", "PSUBSCRIBE", "PSYNC", "PUNSUBSCRIBE",
  "QUIT", "RESET", "SELECT", "SSUBSCRIBE", "SUBSCRIBE", "SUNSUBSCRIBE", "SYNC", "UNSUBSCRIBE", "UNWATCH", "WATCH",
]);
// Blocking commands get their own connection so they cannot stall everyone else's commands.
const BLOCKING = new Set([
  "BLMOVE", "BLMPOP", "BLPOP", "BRPOP", "BRPOPLPUSH", "BZMPOP", "BZPOPMAX", "BZPOPMIN", "WAIT", "WAITAOF",
]);

/**
 * Commands that only read. Upstash Global answers a request made of these alone from the nearest
 * read replica; a request with any other command in it (EVAL, EVALSHA and SCRIPT LOAD included:
 * a script may write) goes to the primary region. Keep it explicit: a command missing here counts
 * as a write, the costlier guess.
 */
const READ_ONLY = new Set([
  "BITCOUNT", "BITPOS", "DBSIZE", "ECHO", "EVAL_RO", "EVALSHA_RO", "EXISTS", "EXPIRETIME", "FCALL_RO", "GEODIST",
  "GEOHASH", "GEOPOS", "GEOSEARCH", "GET", "GETBIT", "GETRANGE", "HEXISTS", "HGET", "HGETALL", "HKEYS", "HLEN",
  "HMGET", "HRANDFIELD", "HSCAN", "HSTRLEN", "HVALS", "JSON.ARRLEN", "JSON.GET", "JSON.MGET", "JSON.OBJKEYS",
  "JSON.OBJLEN", "JSON.STRLEN", "JSON.TYPE", "KEYS", "LCS", "LINDEX", "LLEN", "LPOS", "LRANGE", "MGET",
  "PEXPIRETIME", "PFCOUNT", "PING", "PTTL", "RANDOMKEY", "SCAN", "SCARD", "SDIFF", "SINTER", "SINTERCARD",
  "SISMEMBER", "SMEMBERS", "SMISMEMBER", "SORT_RO", "SRANDMEMBER", "SSCAN", "STRLEN", "SUBSTR", "SUNION", "TIME",
  "TTL", "TYPE", "XLEN", "XRANGE", "XREVRANGE", "ZCARD", "ZCOUNT", "ZDIFF", "ZINTER", "ZINTERCARD", "ZLEXCOUNT",
  "ZMSCORE", "ZRANDMEMBER", "ZRANGE", "ZRANGEBYLEX", "ZRANGEBYSCORE", "ZRANK", "ZREVRANGE", "ZREVRANGEBYLEX",
  "ZREVRANGEBYSCORE", "ZREVRANK", "ZSCAN", "ZSCORE", "ZUNION",
]);

/** Whether a request of these commands only reads (`SCRIPT EXISTS` reads; every other SCRIPT subcommand writes). */
export function isReadOnlyRequest(commands: string[][]): boolean {
  return commands.every(([name = "", sub = ""]) => {
    const upper = name.toUpperCase();
    return READ_ONLY.has(upper) || (upper === "SCRIPT" && sub.toUpperCase() === "EXISTS");
  });
}

/** Options of `startUpstashRestAdapter`. */
export interface UpstashRestOptions {
  redisUrl: string;
  token: string;
  host?: string;
  port?: number;
  /**
   * Round trip (ms) to Upstash's primary region, added to every HTTP request that writes (default 0):
   * half before its commands run, half before the answer goes out.
   */
  writeRttMs?: number;
  /** Round trip (ms) to the nearest read replica, added the same way to read-only requests (default 0). */
  readRttMs?: number;
}

/** Starts the REST adapter over one ioredis connection; resolves once it listens. */
export async function startUpstashRestAdapter(opts: UpstashRestOptions): Promise<UpstashRestAdapter> {
  const writeRttMs = rttOption("writeRttMs", opts.writeRttMs);
  const readRttMs = rttOption("readRttMs", opts.readRttMs);
  await checkRedis(opts.redisUrl);
  const host = opts.host ?? "127.0.0.1";
  const tokenDigest = sha256(opts.token);
  const scripts = new ScriptShas();
  const dedicated = new Set<Redis>();
  let lastRedisError = "";
  // No resend after a reconnect: replaying a half-sent INCR or MULTI could apply it twice.
  const redis = new Redis(opts.redisUrl, { autoResendUnfulfilledCommands: false, maxRetriesPerRequest: 1 });
  redis.on("error", (err: Error) => {
    lastRedisError = err.message; // surfaced in the 500 answers of the requests that fail
  });

  const run = async (commands: string[][], mode: "single" | "pipeline" | "multi-exec"): Promise<Outcome[]> => {
    const prepared = commands.map((command) => scripts.prepare(command));
    const blocking = mode !== "multi-exec" && prepared.some((p) => isBlocking(p.args));
    const conn = blocking ? redis.duplicate() : redis;
    if (blocking) dedicated.add(conn);
    try {
      if (mode === "single" && prepared[0] !== undefined) {
        const [name, ...args] = prepared[0].args;
        return [outcome(null, await conn.callBuffer(name ?? "", ...args), prepared[0].mapReply)];
      }
      // ioredis writes a MULTI…EXEC batch to the socket in one synchronous pass, so commands of other
      // requests on the shared connection cannot land inside the transaction.
      const batch = mode === "multi-exec" ? conn.multi() : conn.pipeline();
      for (const p of prepared) {
        const [name, ...args] = p.args;
        batch.callBuffer(name ?? "", ...args);
      }
      const replies = (await batch.exec()) ?? [];
      return replies.map(([err, reply], i) => outcome(err, reply, prepared[i]?.mapReply));
    } catch (err) {
      if (isReplyError(err)) throw new RestError(400, describeReplyError(err));
      const cause = err instanceof Error ? err.message : String(err);
      const last = lastRedisError === "" ? "" : ` (last connection error: ${lastRedisError})`;
      throw new RestError(500, `ERR redis at ${redactUrl(opts.redisUrl)} failed: ${cause}${last}`);
    } finally {
      if (blocking) {
        dedicated.delete(conn);
        conn.disconnect();
      }
    }
  };

  // The request travels to Redis, runs, and its answer travels back; timers, so other requests go on meanwhile.
  const overDistance = async (commands: string[][], mode: "single" | "pipeline" | "multi-exec"): Promise<Outcome[]> => {
    const rtt = isReadOnlyRequest(commands) ? readRttMs : writeRttMs;
    if (rtt === 0) return run(commands, mode);
    const there = Math.floor(rtt / 2);
    if (there > 0) await sleep(there);
    try {
      return await run(commands, mode);
    } finally {
      await sleep(rtt - there);
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? "/", "http://adapter");
    if (!authorized(req, url, tokenDigest)) throw new RestError(401, "Unauthorized");
    if (req.method !== "POST" && req.method !== "GET") throw new RestError(405, "ERR only GET and POST are supported");
    const body = await readBody(req);
    const base64 = String(req.headers["upstash-encoding"] ?? "").toLowerCase() === "base64";
    const path = url.pathname.replace(/\/+$/, "");
    if (req.method === "POST" && (path === "/pipeline" || path === "/multi-exec")) {
      const commands = parseJson(body);
      if (!Array.isArray(commands) || commands.length === 0) throw new RestError(400, "ERR expected a non-empty array of commands");
      const outcomes = await overDistance(commands.map(parseCommand), path === "/pipeline" ? "pipeline" : "multi-exec");
      return send(res, 200, outcomes.map((o) => encodeOutcome(o, base64)));
    }
    const command = path === "" ? parseCommand(parseJson(body)) : pathCommand(path, req.method === "POST" ? body : undefined);
    const [single] = await overDistance([command], "single");
    if (single === undefined) throw new RestError(500, "ERR no reply");
    if ("error" in single) throw new RestError(400, single.error);
    send(res, 200, encodeOutcome(single, base64));
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      const status = err instanceof RestError ? err.status : 500;
      send(res, status, { error: err instanceof Error ? err.message : String(err) });
    });
  });
  // Node's 5 s default drops idle sockets between benchmark bursts; clients learn this value from the
  // Keep-Alive header and reuse their connections instead of reconnecting.
  server.keepAliveTimeout = 65_000;
  server.listen(opts.port ?? 0, host);
  try {
    await once(server, "listening");
  } catch (err) {
    redis.disconnect();
    throw err;
  }
  const port = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${port}`,
    port,
    close: () => {
      closing ??= (async () => {
        const closed = once(server, "close");
        server.close();
        server.closeAllConnections();
        for (const conn of dedicated) conn.disconnect();
        await closed;
        await redis.quit().catch(() => redis.disconnect());
      })();
      return closing;
    },
  };
}

function rttOption(name: string, value: number | undefined): number {
  if (value === undefined) return 0;
  if (!Number.isFinite(value) || value < 0) throw new Error(`startUpstashRestAdapter: ${name} must be a number of milliseconds ≥ 0, got ${value}`);
  return value;
}

/** Remembers which rewritten script stands for which original, so EVALSHA with the client's hash works. */
class ScriptShas {
  private readonly rewritten = new Map<string, string>();

  /** Rewrites script commands for this Redis; mapReply restores the original SHA where Redis saw another. */
  prepare(command: string[]): { args: string[]; mapReply?: (reply: unknown) => unknown } {
    const [rawName = "", ...rest] = command;
    // Upper case also keeps ioredis from applying its HGETALL-to-object reply transformer (keyed by "hgetall").
    const name = rawName.toUpperCase();
    if ((name === "EVAL" || name === "EVAL_RO") && rest[0] !== undefined) {
      return { args: [name, this.register(rest[0]), ...rest.slice(1)] };
    }
    if ((name === "EVALSHA" || name === "EVALSHA_RO") && rest[0] !== undefined) {
      return { args: [name, this.lookup(rest[0]), ...rest.slice(1)] };
    }
    const sub = rest[0]?.toUpperCase();
    if (name === "SCRIPT" && sub === "LOAD" && rest[1] !== undefined) {
      const original = sha1(rest[1]);
      return { args: [name, "LOAD", this.register(rest[1])], mapReply: () => Buffer.from(original) };
    }
    if (name === "SCRIPT" && sub === "EXISTS") {
      return { args: [name, "EXISTS", ...rest.slice(1).map((sha) => this.lookup(sha))] };
    }
    return { args: [name, ...rest] };
  }

  private register(script: string): string {
    const runnable = stripUnsupportedShebangFlags(script);
    if (runnable !== script) this.rewritten.set(sha1(script), sha1(runnable));
    return runnable;
  }

  private lookup(sha: string): string {
    return this.rewritten.get(sha.toLowerCase()) ?? sha;
  }
}

/**
 * @upstash/ratelimit scripts start with `#!lua flags=allow-key-locking`, a flag Redis 7.0 rejects
 * ("Unexpected flag in script shebang"). Drop that flag; a shebang left without flags becomes an empty
 * line: the script runs in plain (pre-7.0) mode and keeps the line numbers of its source.
 */
export function stripUnsupportedShebangFlags(script: string): string {
  const end = script.indexOf("\n");
  const line = end === -1 ? script : script.slice(0, end);
  if (!line.startsWith("#!") || !line.includes("allow-key-locking")) return script;
  const flags = /flags=(\S*)/.exec(line)?.[1] ?? "";
  const kept = flags.split(",").filter((f) => f !== "" && f !== "allow-key-locking");
  const shebang = kept.length === 0 ? "" : line.replace(/flags=\S*/, `flags=${kept.join(",")}`);
  return shebang + script.slice(line.length);
}

function outcome(err: Error | null, reply: unknown, mapReply?: (reply: unknown) => unknown): Outcome {
  if (err) return { error: isReplyError(err) ? err.message : `ERR ${err.message}` };
  return { result: mapReply ? mapReply(reply) : reply };
}

/**
 * With `Upstash-Encoding: base64`, @upstash/redis base64-decodes every string it gets except a top-level
 * "OK"; strings inside arrays are always decoded, so a raw "OK" there would turn into "8". Numbers and
 * null pass as they are. Without the header, strings go out as UTF-8 (lossy for binary values).
 */
function encodeOutcome(o: Outcome, base64: boolean): Outcome {
  if ("error" in o) return o;
  const top = o.result;
  if (base64 && Buffer.isBuffer(top) && top.length === 2 && top.toString("latin1") === "OK") return { result: "OK" };
  return { result: encodeReply(top, base64) };
}

function encodeReply(reply: unknown, base64: boolean): unknown {
  if (reply === null || reply === undefined) return null;
  if (typeof reply === "number") return reply;
  if (Array.isArray(reply)) return reply.map((item: unknown) => encodeReply(item, base64));
  let bytes: Buffer;
  if (Buffer.isBuffer(reply)) bytes = reply;
  // Errors nested in script or EXEC replies travel as their message text.
  else if (reply instanceof Error) bytes = Buffer.from(reply.message);
  else bytes = Buffer.from(typeof reply === "object" && reply !== null ? JSON.stringify(reply) : String(reply as string | number | boolean | null | undefined));
  return base64 ? bytes.toString("base64") : bytes.toString("utf8");
}

function parseCommand(value: unknown): string[] {
  if (!Array.isArray(value) || value.length === 0 || typeof value[0] !== "string") {
    throw new RestError(400, "ERR a command is a JSON array like [\"SET\",\"key\",\"value\"]");
  }
  const args = value.map((arg: unknown) => {
    if (typeof arg === "string") return arg;
    if (typeof arg === "number" || typeof arg === "boolean") return String(arg);
    throw new RestError(400, `ERR unsupported argument ${JSON.stringify(arg)}: use strings or numbers`);
  });
  const name = args[0]?.toUpperCase() ?? "";
  if (CONNECTION_STATE.has(name)) throw new RestError(400, `ERR ${name} is not supported over REST`);
  return args;
}

/** `GET /set/k/v`, or `POST /set/k` with the value as the raw body. */
function pathCommand(path: string, body: Buffer | undefined): string[] {
  const parts = path.split("/").filter((p) => p !== "").map((p) => decodeURIComponent(p));
  if (body !== undefined && body.length > 0) parts.push(body.toString("utf8"));
  return parseCommand(parts);
}

function isBlocking(args: string[]): boolean {
  const name = args[0] ?? "";
  if (BLOCKING.has(name)) return true;
  return (name === "XREAD" || name === "XREADGROUP") && args.some((a) => a.toUpperCase() === "BLOCK");
}

function isReplyError(err: unknown): err is Error & { name: "ReplyError" } {
  return err instanceof Error && err.name === "ReplyError";
}

/** EXECABORT alone hides the cause; name the command Redis refused. */
function describeReplyError(err: Error): string {
  const previous: unknown = (err as Error & { previousErrors?: unknown }).previousErrors;
  const first: unknown = Array.isArray(previous) ? previous[0] : undefined;
  return first instanceof Error ? `${err.message} ${first.message}` : err.message;
}

function authorized(req: IncomingMessage, url: URL, tokenDigest: Buffer): boolean {
  const header = req.headers.authorization ?? "";
  const given = header.startsWith("Bearer ") ? header.slice(7) : url.searchParams.get("_token");
  // Comparing digests keeps the comparison constant-time even when the lengths differ.
  return given !== null && timingSafeEqual(sha256(given), tokenDigest);
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString("utf8"));
  } catch {
    throw new RestError(400, "ERR the body is not valid JSON");
  }
}

function send(res: ServerResponse, status: number, payload: unknown): void {
  if (res.headersSent) return void res.end();
  const text = JSON.stringify(payload);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function sha1(text: string): string {
  return createHash("sha1").update(text).digest("hex");
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}
