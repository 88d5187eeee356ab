import { once } from "node:events";
import { createServer, type AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { checkRedis } from "../../dev/redis.ts";

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

/** A loopback port that was free a moment ago, so nothing answers on it. */
async function closedPort(): Promise<number> {
  const server = createServer().listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, "close");
  return port;
}

describe("checkRedis", () => {
  it("resolves when Redis answers PING", async () => {
    await expect(checkRedis(REDIS_URL)).resolves.toBeUndefined();
  });

  it("rejects for a closed port with a message naming REDIS_URL and the redis-server command", async () => {
    const port = await closedPort();
    const error = await checkRedis(`redis://:secret@127.0.0.1:${port}`, 1_000).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(Error);
    const message = (error as Error).message;
    expect(message).toContain(`Redis is not reachable at redis://:***@127.0.0.1:${port}`);
    expect(message).toContain("ECONNREFUSED");
    expect(message).toContain("Set REDIS_URL");
    expect(message).toContain("redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no");
    expect(message).not.toContain("secret");
  });

  it("rejects within the timeout when something silent holds the port", async () => {
    const silent = createServer(() => {}).listen(0, "127.0.0.1");
    await once(silent, "listening");
    try {
      const started = Date.now();
      await expect(checkRedis(`redis://127.0.0.1:${(silent.address() as AddressInfo).port}`, 300)).rejects.toThrow(/Set REDIS_URL/);
      expect(Date.now() - started).toBeLessThan(1_500);
    } finally {
      silent.close();
    }
  });
});
