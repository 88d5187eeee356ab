import { Redis } from "ioredis";

/**
 * Cleanup steps registered as things are created, run in reverse order by `close()`. A failing step
 * is reported and does not stop the others. Safe to call twice.
 */
export class Teardown {
  private readonly steps: { name: string; run: () => Promise<void> }[] = [];
  private closing: Promise<void> | null = null;

  add(name: string, run: () => Promise<void>): void {
    this.steps.push({ name, run });
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const step of this.steps.reverse()) {
        try {
          await step.run();
        } catch (err) {
          console.error(`Cleanup failed (${step.name}): ${err instanceof Error ? err.message : String(err)}`);
        }
      }
    })();
    return this.closing;
  }
}

/** Deletes every key under prefix (SCAN, not KEYS, so a shared Redis is not blocked). */
export async function deleteRedisPrefix(url: string, prefix: string): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    // Glob characters in the prefix would widen the match; escape them.
    const pattern = `${prefix.replace(/[*?[\]\\]/g, "\\$&")}*`;
    for await (const keys of redis.scanStream({ match: pattern, count: 500 })) {
      const batch = keys as string[];
      if (batch.length > 0) await redis.del(...batch);
    }
  } finally {
    redis.disconnect();
  }
}
