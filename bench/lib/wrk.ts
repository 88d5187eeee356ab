/**
 * Throughput runs with wrk (Debian package `wrk`): a C load generator that costs far less CPU per
 * request than a Node client, which matters when every process shares the machine's two cores.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findExecutable, startProcess } from "./peer-process.ts";

const WRK_DIRS = ["/usr/bin", "/usr/local/bin", "/opt/homebrew/bin"];

/** Path of the wrk binary, or null when it is not installed (Debian: `apt-get install wrk`). */
export function wrkBinary(): string | null {
  return findExecutable("wrk", WRK_DIRS);
}

/** Whether wrk is installed. */
export function wrkAvailable(): boolean {
  return wrkBinary() !== null;
}

/** One wrk run: the same request over and over on `connections` keep-alive connections. */
export interface WrkOptions {
  url: string;
  method?: string;
  headers?: Record<string, string>;
  /** Sent as is; wrk adds Content-Length. */
  body?: string;
  connections: number;
  /** wrk threads (default 1; at most `connections`). */
  threads?: number;
  /** Whole seconds (wrk takes no fractions). */
  durationSec: number;
  /** A request without an answer after this long counts as a timeout error (default 10). */
  timeoutSec?: number;
  /** wrk binary (default: found by `wrkBinary`). */
  bin?: string;
  /**
   * Headers of one request each, added to `headers` and sent once, in order (each thread takes
   * every n-th): for signed requests, which the backplane accepts once (`signedPool`). A thread
   * that has sent its share stops rather than send one again (`poolExhausted`); wrk still waits out
   * the duration, so such a run's rate is understated and must not count.
   */
  pool?: Record<string, string>[];
}

/** What a wrk run measured. Latencies are of completed requests, to the last byte of the response. */
export interface WrkResult {
  /** Completed requests (any status). */
  requests: number;
  /** Completed requests per second of the run. */
  rps: number;
  durationSec: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
  /** Responses with a status outside 200-299. */
  non2xx: number;
  /** Count of each status other than 200, e.g. { "503": 4 }. */
  statuses: Record<string, number>;
  /** connect + read + write errors and timeouts. */
  socketErrors: number;
  errors: { connect: number; read: number; write: number; timeout: number };
  /** Threads that used up their share of `pool` before the duration was over (they stopped sending; the rate is understated). */
  poolExhausted: number;
  /** wrk's own report (stdout), for the record. */
  output: string;
}

/** A Lua string literal (wrk runs LuaJIT): quotes, backslashes and control bytes escaped. */
function luaString(value: string): string {
  // eslint-disable-next-line no-control-regex -- control bytes are exactly what must be escaped
  const escaped = value.replace(/[\\"]/g, "\\$&").replace(/[\x00-\x1f\x7f]/g, (ch) => `\\${ch.charCodeAt(0).toString().padStart(3, "0")}`);
  return `"${escaped}"`;
}

const RESULT_MARKER = "SWITCHYARD_WRK_RESULT ";

/** Where a pool of per-request headers is read from, and by how many threads. */
export interface WrkPoolFile {
  path: string;
  threads: number;
}

/**
 * Lua for a pool: each thread reads its share of the pool file (a tab-separated header line, then
 * one line of values per request) in `init` and formats every request up front, so `request` only
 * hands the next one out. A thread whose share is used up stops its event loop and sends nothing
 * more (an empty write) rather than send a request twice.
 */
function poolLua(pool: WrkPoolFile): string {
  return `
local pool_file = ${luaString(pool.path)}
local pool_threads = ${pool.threads}
local pool = {}
local cursor = 1
exhausted = 0

local function fields(line)
  local out = {}
  for value in line:gmatch("[^\t]+") do table.insert(out, value) end
  return out
end

function init(args)
  local names = nil
  local n = 0
  for line in io.lines(pool_file) do
    if names == nil then
      names = fields(line)
    else
      if n % pool_threads == pool_index then
        local headers = {}
        for name, value in pairs(wrk.headers) do headers[name] = value end
        for i, value in ipairs(fields(line)) do headers[names[i]] = value end
        table.insert(pool, wrk.format(nil, nil, headers, nil))
      end
      n = n + 1
    end
  end
end

function request()
  if cursor > #pool then
    if exhausted == 0 then
      exhausted = 1
      wrk.thread:stop()
    end
    return ""
  end
  local r = pool[cursor]
  cursor = cursor + 1
  return r
end
`;
}

/**
 * The wrk script: the request (or a pool of them, see poolLua), a `response` callback counting
 * every status other than 200 (each thread has its own Lua state, so `done` collects the counts
 * from the threads), and a `done` that prints the summary as one JSON line with latencies in
 * microseconds.
 */
export function wrkScript(opts: Pick<WrkOptions, "method" | "headers" | "body"> & { pool?: WrkPoolFile }): string {
  const headers = Object.entries(opts.headers ?? {})
    .map(([name, value]) => `wrk.headers[${luaString(name)}] = ${luaString(value)}`)
    .join("\n");
  return `-- Generated by bench/lib/wrk.ts
wrk.method = ${luaString(opts.method ?? "GET")}
${opts.body === undefined ? "" : `wrk.body = ${luaString(opts.body)}`}
${headers}
${opts.pool === undefined ? "" : poolLua(opts.pool)}
local threads = {}
function setup(thread)
  thread:set("pool_index", #threads)
  table.insert(threads, thread)
end

statuses = {}
function response(status, headers, body)
  if status ~= 200 then
    statuses[status] = (statuses[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local counts = {}
  local ran_out = 0
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
    ran_out = ran_out + (thread:get("exhausted") or 0)
  end
  local parts = {}
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%d":%d', status, n))
  end
  local e = summary.errors
  io.write(${luaString(RESULT_MARKER)}, string.format(
    '{"requests":%d,"durationUs":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%f,"connect":%d,"read":%d,"write":%d,"timeout":%d,"exhausted":%d,"statuses":{%s}}\\n',
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    e.connect, e.read, e.write, e.timeout, ran_out, table.concat(parts, ",")))
end
`;
}

interface ScriptResult {
  requests: number;
  durationUs: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
  connect: number;
  read: number;
  write: number;
  timeout: number;
  exhausted: number;
  statuses: Record<string, number>;
}

/** The pool as the Lua reads it: the header names tab-separated, then each request's values. */
function poolFile(pool: Record<string, string>[]): string {
  const names = Object.keys(pool[0] ?? {});
  if (names.length === 0) throw new Error("wrk pool: no requests, or requests without headers");
  const lines = [names.join("\t")];
  for (const headers of pool) {
    const values = names.map((name) => headers[name] ?? "");
    if (values.some((v) => v === "" || /[\t\r\n]/.test(v)) || Object.keys(headers).length !== names.length) {
      throw new Error(`wrk pool: every request needs the same headers (${names.join(", ")}), with non-empty values without tabs or line breaks`);
    }
    lines.push(values.join("\t"));
  }
  return `${lines.join("\n")}\n`;
}

/** Runs wrk once and returns what it measured; throws when wrk fails or prints no result. */
export async function runWrk(opts: WrkOptions): Promise<WrkResult> {
  const bin = opts.bin ?? wrkBinary();
  if (bin === null) throw new Error("wrk is not installed (Debian: apt-get install wrk); check wrkAvailable() first");
  const threads = Math.min(opts.threads ?? 1, opts.connections);
  const dir = await mkdtemp(join(tmpdir(), "sy-wrk-"));
  try {
    const scriptPath = join(dir, "request.lua");
    let pool: WrkPoolFile | undefined;
    if (opts.pool !== undefined) {
      pool = { path: join(dir, "pool.tsv"), threads };
      await writeFile(pool.path, poolFile(opts.pool));
    }
    await writeFile(scriptPath, wrkScript({ ...opts, pool }));
    const args = [
      "--connections", String(opts.connections),
      "--threads", String(threads),
      "--duration", `${Math.max(1, Math.round(opts.durationSec))}s`,
      "--timeout", `${Math.max(1, Math.round(opts.timeoutSec ?? 10))}s`,
      "--latency",
      "--script", scriptPath,
      opts.url,
    ];
    const proc = startProcess("wrk", bin, args);
    const stdout: string[] = [];
    proc.onLine((l) => void stdout.push(l));
    // A hung wrk must not hang the benchmark: it gets its duration, the timeout and a margin.
    const killer = setTimeout(() => void proc.stop(), (opts.durationSec + (opts.timeoutSec ?? 10) + 10) * 1_000);
    await proc.exited;
    clearTimeout(killer);
    const line = stdout.find((l) => l.startsWith(RESULT_MARKER));
    if (proc.child.exitCode !== 0 || line === undefined) {
      throw new Error(`wrk failed (exit ${proc.child.exitCode ?? proc.child.signalCode}):\n${proc.recentOutput()}`);
    }
    const r = JSON.parse(line.slice(RESULT_MARKER.length)) as ScriptResult;
    const non2xx = Object.entries(r.statuses).reduce((sum, [status, n]) => (Number(status) >= 200 && Number(status) < 300 ? sum : sum + n), 0);
    const durationSec = r.durationUs / 1e6;
    return {
      requests: r.requests,
      rps: durationSec > 0 ? r.requests / durationSec : 0,
      durationSec,
      p50Ms: r.p50 / 1_000,
      p90Ms: r.p90 / 1_000,
      p99Ms: r.p99 / 1_000,
      maxMs: r.max / 1_000,
      meanMs: r.mean / 1_000,
      non2xx,
      statuses: r.statuses,
      socketErrors: r.connect + r.read + r.write + r.timeout,
      poolExhausted: r.exhausted,
      errors: { connect: r.connect, read: r.read, write: r.write, timeout: r.timeout },
      output: stdout.filter((l) => !l.startsWith(RESULT_MARKER)).join("\n"),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
