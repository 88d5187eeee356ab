import { createHash, randomBytes } from "node:crypto";
import { Ratelimit } from "@upstash/ratelimit";
import { Redis } from "@upstash/redis";
import { Redis as IORedis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startUpstashRestAdapter, type UpstashRestAdapter } from "../../dev/upstash-rest.ts";

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const TOKEN = "test-token";
const prefix = `test:upstash-rest:${randomBytes(4).toString("hex")}:`;

let adapter: UpstashRestAdapter;
let redis: Redis;
let direct: IORedis;

beforeAll(async () => {
  adapter = await startUpstashRestAdapter({ redisUrl: REDIS_URL, token: TOKEN });
  redis = new Redis({ url: adapter.url, token: TOKEN });
  direct = new IORedis(REDIS_URL);
});

afterAll(async () => {
  const keys = await direct.keys(`${prefix}*`);
  if (keys.length > 0) await direct.del(...keys);
  direct.disconnect();
  await adapter.close();
  await adapter.close(); // safe twice
});

/** POSTs straight to the adapter, for what the client hides (status codes, raw encoding). */
async function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: unknown }> {
  const res = await fetch(adapter.url + path, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

describe("Upstash REST adapter with @upstash/redis", () => {
  it("stores and reads strings, including unicode and the literal value OK", async () => {
    expect(await redis.set(`${prefix}s`, "héllo wörld 🚀 — 你好")).toBe("OK");
    expect(await redis.get(`${prefix}s`)).toBe("héllo wörld 🚀 — 你好");
    await redis.set(`${prefix}ok`, "OK");
    expect(await redis.mget(`${prefix}ok`, `${prefix}s`, `${prefix}missing`)).toEqual(["OK", "héllo wörld 🚀 — 你好", null]);
  });

  it("round-trips JSON objects the client serialises", async () => {
    await redis.set(`${prefix}json`, { plan: "pro", limits: [1, 2], nested: { ok: true } });
    expect(await redis.get(`${prefix}json`)).toEqual({ plan: "pro", limits: [1, 2], nested: { ok: true } });
  });

  it("counts with INCR and INCRBY", async () => {
    expect(await redis.incr(`${prefix}n`)).toBe(1);
    expect(await redis.incrby(`${prefix}n`, 41)).toBe(42);
    expect(await redis.get(`${prefix}n`)).toBe(42);
  });

  it("handles hashes, lists and sets", async () => {
    expect(await redis.hset(`${prefix}h`, { model: "llama", tokens: 12 })).toBe(2);
    expect(await redis.hget(`${prefix}h`, "model")).toBe("llama");
    expect(await redis.hgetall(`${prefix}h`)).toEqual({ model: "llama", tokens: 12 });
    await redis.rpush(`${prefix}l`, "a", "b");
    await redis.lpush(`${prefix}l`, "z");
    expect(await redis.lrange(`${prefix}l`, 0, -1)).toEqual(["z", "a", "b"]);
    expect(await redis.sadd(`${prefix}set`, "x", "y", "x")).toBe(2);
    expect((await redis.smembers(`${prefix}set`)).sort()).toEqual(["x", "y"]);
    expect(await redis.sismember(`${prefix}set`, "y")).toBe(1);
  });

  it("expires keys", async () => {
    await redis.set(`${prefix}ttl`, "v", { ex: 100 });
    const ttl = await redis.ttl(`${prefix}ttl`);
    expect(ttl).toBeGreaterThan(90);
    await redis.set(`${prefix}px`, "v", { px: 50 });
    await new Promise((resolve) => setTimeout(resolve, 120));
    expect(await redis.get(`${prefix}px`)).toBeNull();
  });

  it("runs a pipeline and reports per-command results", async () => {
    const results = await redis.pipeline().set(`${prefix}p`, "1").incr(`${prefix}p`).get(`${prefix}p`).exec();
    expect(results).toEqual(["OK", 2, 2]);
    const withError = await redis.pipeline().incr(`${prefix}h`).get(`${prefix}p`).exec({ keepErrors: true });
    expect(withError[0]?.error).toMatch(/^WRONGTYPE/);
    expect(withError[1]).toEqual({ error: undefined, result: 2 });
  });

  it("runs multi() as one transaction, never interleaved with concurrent requests", async () => {
    expect(await redis.multi().set(`${prefix}m`, "a").append(`${prefix}m`, "b").get(`${prefix}m`).exec()).toEqual(["OK", 2, "ab"]);
    const pairs = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        i % 2 === 0 ? redis.multi().incr(`${prefix}tx`).incr(`${prefix}tx`).exec() : redis.incr(`${prefix}tx`).then((n) => [n]),
      ),
    );
    for (const pair of pairs.filter((p) => p.length === 2)) expect(pair[1]).toBe(Number(pair[0]) + 1);
    expect(await redis.get(`${prefix}tx`)).toBe(60);
  });

  it("answers a failing command with HTTP 400 and the client throws Redis's message", async () => {
    await expect(redis.incr(`${prefix}h`)).rejects.toThrow(/WRONGTYPE Operation against a key holding the wrong kind of value/);
    const raw = await post("/", ["NOSUCHCOMMAND", "x"]);
    expect(raw.status).toBe(400);
    expect(raw.body).toEqual({ error: expect.stringMatching(/^ERR unknown command/) as unknown });
    const aborted = await post("/multi-exec", [["SET", `${prefix}never`, "1"], ["SET"]]);
    expect(aborted.status).toBe(400);
    expect(aborted.body).toEqual({ error: expect.stringMatching(/^EXECABORT .*wrong number of arguments/) as unknown });
    expect(await redis.exists(`${prefix}never`)).toBe(0);
    // Connection-state commands would leak into every other request on the shared connection.
    expect(await post("/", ["SELECT", "1"])).toEqual({ status: 400, body: { error: "ERR SELECT is not supported over REST" } });
  });

  it("rejects a wrong token with 401 Unauthorized", async () => {
    const intruder = new Redis({ url: adapter.url, token: "wrong-token" });
    await expect(intruder.get(`${prefix}s`)).rejects.toThrow(/Unauthorized/);
    const res = await fetch(`${adapter.url}/get/${prefix}s`);
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ error: "Unauthorized" });
  });

  it("evaluates scripts, with EVALSHA working for ratelimit-style shebang flags Redis 7.0 rejects", async () => {
    expect(await redis.eval("return {KEYS[1], ARGV[1], 7, 'OK'}", [`${prefix}k`], ["v"])).toEqual([`${prefix}k`, "v", 7, "OK"]);
    const lua = `#!lua flags=allow-key-locking\nreturn redis.call("INCRBY", KEYS[1], ARGV[1])`;
    const sha = createHash("sha1").update(lua).digest("hex");
    await expect(redis.evalsha(sha, [`${prefix}e`], [5])).rejects.toThrow(/NOSCRIPT/);
    expect(await redis.eval(lua, [`${prefix}e`], [5])).toBe(5);
    expect(await redis.evalsha(sha, [`${prefix}e`], [5])).toBe(10);
    expect(await redis.scriptLoad(lua)).toBe(sha);
    expect(await redis.scriptExists(sha)).toEqual([1]);
    expect(await redis.createScript<number>(lua).exec([`${prefix}e`], ["1"])).toBe(11);
  });

  it("is binary-safe and speaks the path form", async () => {
    await direct.set(`${prefix}bin`, Buffer.from([0xff, 0x00, 0x80, 0x4f]));
    const encoded = await post("/", ["GET", `${prefix}bin`], { "upstash-encoding": "base64" });
    expect(encoded).toEqual({ status: 200, body: { result: Buffer.from([0xff, 0x00, 0x80, 0x4f]).toString("base64") } });
    const headers = { authorization: `Bearer ${TOKEN}` };
    const set = await fetch(`${adapter.url}/set/${encodeURIComponent(`${prefix}path`)}/a%20b`, { headers });
    expect(await set.json()).toEqual({ result: "OK" });
    const get = await fetch(`${adapter.url}/get/${encodeURIComponent(`${prefix}path`)}?_token=${TOKEN}`);
    expect(await get.json()).toEqual({ result: "a b" });
  });

  it("serves blocking commands on their own connection so other requests do not wait", async () => {
    const started = Date.now();
    const blocked = post("/", ["BLPOP", `${prefix}queue`, "1"]);
    expect(await redis.set(`${prefix}fast`, "1")).toBe("OK");
    expect(Date.now() - started).toBeLessThan(500);
    expect(await blocked).toEqual({ status: 200, body: { result: null } });
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
  });
});

describe("startUpstashRestAdapter", () => {
  it("refuses to start without Redis and says how to fix it", async () => {
    await expect(startUpstashRestAdapter({ redisUrl: "redis://127.0.0.1:1", token: TOKEN })).rejects.toThrow(/Set REDIS_URL/);
  });
});

describe("@upstash/ratelimit through the adapter", () => {
  const limiters = {
    fixedWindow: Ratelimit.fixedWindow(3, "10 s"),
    slidingWindow: Ratelimit.slidingWindow(3, "10 s"),
    tokenBucket: Ratelimit.tokenBucket(1, "10 s", 3),
  };
  for (const [name, limiter] of Object.entries(limiters)) {
    it(`${name} allows 3 requests, then blocks the 4th`, async () => {
      const ratelimit = new Ratelimit({ redis, limiter, prefix: `${prefix}rl:${name}`, ephemeralCache: false });
      const outcomes = [];
      for (let i = 0; i < 4; i++) {
        const res = await ratelimit.limit("user-1");
        await res.pending;
        outcomes.push({ success: res.success, remaining: res.remaining, limit: res.limit, reason: res.reason });
      }
      expect(outcomes).toEqual([
        { success: true, remaining: 2, limit: 3, reason: undefined },
        { success: true, remaining: 1, limit: 3, reason: undefined },
        { success: true, remaining: 0, limit: 3, reason: undefined },
        { success: false, remaining: 0, limit: 3, reason: undefined },
      ]);
      const other = await ratelimit.limit("user-2");
      expect(other.success).toBe(true);
    });
  }
});

describe("distance to the primary region (writeRttMs, readRttMs)", () => {
  const WRITE_RTT = 300;
  const READ_RTT = 60;
  let far: UpstashRestAdapter;
  const k = (name: string) => `${prefix}far:${name}`;

  beforeAll(async () => {
    far = await startUpstashRestAdapter({ redisUrl: REDIS_URL, token: TOKEN, writeRttMs: WRITE_RTT, readRttMs: READ_RTT });
  });
  afterAll(async () => {
    await far.close();
  });

  /** POSTs to the far adapter; resolves with the status, the body and how long the answer took (ms). */
  async function timed(path: string, body: unknown): Promise<{ status: number; body: unknown; ms: number }> {
    const started = performance.now();
    const res = await fetch(far.url + path, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const parsed: unknown = await res.json();
    return { status: res.status, body: parsed, ms: performance.now() - started };
  }

  it("delays a write by the write RTT and a read-only request by the read RTT only", async () => {
    const write = await timed("/", ["SET", k("n"), "1"]);
    expect(write).toMatchObject({ status: 200, body: { result: "OK" } });
    expect(write.ms).toBeGreaterThanOrEqual(WRITE_RTT - 5);
    const read = await timed("/pipeline", [["GET", k("n")], ["MGET", k("n")], ["HGETALL", k("h")], ["ZRANGE", k("z"), "0", "-1"], ["TTL", k("n")]]);
    expect(read.body).toEqual([{ result: "1" }, { result: ["1"] }, { result: [] }, { result: [] }, { result: -1 }]);
    expect(read.ms).toBeGreaterThanOrEqual(READ_RTT - 5);
    expect(read.ms).toBeLessThan(WRITE_RTT);
  });

  it("counts a pipeline or transaction with one write among reads as a write", async () => {
    await direct.set(k("mixed"), "1");
    const pipeline = await timed("/pipeline", [["GET", k("mixed")], ["INCR", k("mixed")]]);
    expect(pipeline.body).toEqual([{ result: "1" }, { result: 2 }]);
    expect(pipeline.ms).toBeGreaterThanOrEqual(WRITE_RTT - 5);
    const multi = await timed("/multi-exec", [["GET", k("mixed")], ["EXPIRE", k("mixed"), "100"]]);
    expect(multi.body).toEqual([{ result: "2" }, { result: 1 }]);
    expect(multi.ms).toBeGreaterThanOrEqual(WRITE_RTT - 5);
  });

  it("counts EVAL, EVALSHA and SCRIPT LOAD as writes, EVAL_RO, EVALSHA_RO and SCRIPT EXISTS as reads", async () => {
    const lua = "return redis.call('GET', KEYS[1])";
    const sha = createHash("sha1").update(lua).digest("hex");
    await direct.set(k("script"), "2");
    const writes = await Promise.all([
      timed("/", ["EVAL", lua, "1", k("script")]),
      timed("/", ["SCRIPT", "LOAD", lua]),
    ]);
    expect(writes.map((w) => w.body)).toEqual([{ result: "2" }, { result: sha }]);
    const evalsha = await timed("/", ["EVALSHA", sha, "1", k("script")]);
    for (const w of [...writes, evalsha]) expect(w.ms).toBeGreaterThanOrEqual(WRITE_RTT - 5);
    const reads = await Promise.all([
      timed("/", ["EVAL_RO", lua, "1", k("script")]),
      timed("/", ["EVALSHA_RO", sha, "1", k("script")]),
      timed("/", ["SCRIPT", "EXISTS", sha]),
    ]);
    expect(reads.map((r) => r.body)).toEqual([{ result: "2" }, { result: "2" }, { result: [1] }]);
    for (const r of reads) expect(r.ms).toBeLessThan(WRITE_RTT);
  });

  it("runs the commands half-way through the round trip: the write lands before its answer leaves", async () => {
    const key = k("halfway");
    const started = performance.now();
    const write = timed("/", ["SET", key, "v"]);
    await new Promise((resolve) => setTimeout(resolve, WRITE_RTT / 4));
    expect(await direct.get(key)).toBeNull(); // still on its way to the primary
    while ((await direct.get(key)) === null) await new Promise((resolve) => setTimeout(resolve, 5));
    const landedAt = performance.now() - started;
    expect(landedAt).toBeGreaterThanOrEqual(WRITE_RTT / 2 - 5);
    const answered = await write;
    expect(answered.ms).toBeGreaterThanOrEqual(landedAt + WRITE_RTT / 2 - 20);
  });

  it("does not hold up other requests while one is in flight", async () => {
    const started = performance.now();
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => timed("/", ["SET", k(`many:${i}`), String(i)])));
    expect(results.every((r) => r.status === 200)).toBe(true);
    // One after another they would take ten round trips.
    expect(performance.now() - started).toBeLessThan(WRITE_RTT * 5);
  });

  it("delays an answer that is an error as well", async () => {
    await direct.hset(k("hash"), "field", "1");
    const failed = await timed("/", ["INCR", k("hash")]);
    expect(failed.status).toBe(400);
    expect(failed.body).toEqual({ error: expect.stringMatching(/^WRONGTYPE/) as unknown });
    expect(failed.ms).toBeGreaterThanOrEqual(WRITE_RTT - 5);
  });

  it("refuses a negative round trip at start", async () => {
    await expect(startUpstashRestAdapter({ redisUrl: REDIS_URL, token: TOKEN, writeRttMs: -1 })).rejects.toThrow(/writeRttMs must be a number of milliseconds ≥ 0/);
  });
});
