import { Redis } from "ioredis";

/** The command from docs (toolchain.md) that starts a throwaway local Redis like the one CI runs. */
export const REDIS_START_COMMAND = "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no";

/** Resolves when Redis at url answers PING within timeoutMs; otherwise rejects with an Error whose message names the fix (set REDIS_URL, or start redis-server with the exact command from toolchain.md). */
export async function checkRedis(url: string, timeoutMs = 2_000): Promise<void> {
  // No retries and no offline queue: a check must fail fast instead of waiting for a reconnect loop.
  const redis = new Redis(url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  let lastError: Error | undefined;
  // ioredis reports connection failures as "error" events too; without a listener they would crash the process.
  redis.on("error", (err: Error) => {
    lastError = err;
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([
      (async () => {
        await redis.connect();
        const pong = await redis.ping();
        if (pong !== "PONG") throw new Error(`PING answered ${JSON.stringify(pong)}`);
      })(),
      timeout,
    ]);
  } catch (err) {
    // The client's last connection error says more than the timeout that ended the wait.
    const reason = lastError ?? (err instanceof Error ? err : new Error(String(err)));
    throw new Error(
      `Redis is not reachable at ${redactUrl(url)} (${reason.message}). ` +
        `Set REDIS_URL to a running Redis, or start one locally with: ${REDIS_START_COMMAND}`,
      { cause: err },
    );
  } finally {
    clearTimeout(timer);
    redis.disconnect();
  }
}

/** The URL with any password replaced, safe for error messages and logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== "") parsed.password = "***";
    return parsed.toString();
  } catch {
    return "<invalid url>";
  }
}
