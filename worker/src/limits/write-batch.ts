import type { Redis } from "@upstash/redis/cloudflare";
import { SETTLE, SETTLE_SHA } from "./lease-scripts.ts";
import type { RedisBatch } from "./types.ts";

/** One budget settlement (lease-scripts.ts SETTLE: mode 1 into a lease record, mode 2 a direct reservation). */
export interface Settlement {
  key: string;
  meta: string;
  mode: 1 | 2;
  holder: string;
  actual: number;
  reserved: number;
}

/**
 * Writes that go to Redis in one round trip: a pipeline, plus the budget settlements of every
 * request in it, merged per lease record (or per counter) and sent as one SETTLE call by its SHA.
 * Per request that was a script call with the script's whole text: the largest part of the end
 * batch's JSON and of Redis's work per request. Merging is exact: a settlement only adds to a record
 * and a counter, and the script checks each record's existence once for all of them.
 */
export class WriteBatch {
  readonly pipe: RedisBatch;
  private readonly settlements = new Map<string, Settlement>();

  constructor(pipe: RedisBatch) {
    this.pipe = pipe;
  }

  /** Adds a settlement, merged with the batch's others of the same record. */
  settle(s: Settlement): void {
    const id = `${s.mode}|${s.key}|${s.holder}`;
    const merged = this.settlements.get(id);
    if (merged) {
      merged.actual += s.actual;
      merged.reserved += s.reserved;
    } else this.settlements.set(id, { ...s });
  }

  /** Whether there is anything to send. */
  get empty(): boolean {
    return this.settlements.size === 0 && this.pipe.length() === 0;
  }

  /**
   * Sends everything. Rejects when the round trip failed or Redis refused a command (the caller's
   * degraded mode applies, as for any failed pipeline). If Redis does not know the script (its cache
   * was flushed) the settlements go again with the script's text; nothing else is sent twice.
   */
  async exec(redis: Redis): Promise<void> {
    const keys: string[] = [];
    const args: (string | number)[] = [];
    for (const s of this.settlements.values()) {
      keys.push(s.key, s.meta);
      args.push(s.mode, s.holder, s.actual, s.reserved);
    }
    const at = keys.length > 0 ? this.pipe.length() : -1;
    if (at >= 0) this.pipe.evalsha(SETTLE_SHA, keys, args);
    if (this.pipe.length() === 0) return;
    const results = await this.pipe.exec({ keepErrors: true });
    let failure: string | undefined;
    results.forEach((r, i) => {
      if (r.error === undefined) return;
      if (i === at && r.error.startsWith("NOSCRIPT")) return;
      failure ??= r.error;
    });
    if (failure !== undefined) throw new Error(`Redis refused a write of the batch: ${failure}`);
    if (at >= 0 && results[at]?.error !== undefined) await redis.eval(SETTLE, keys, args);
  }
}
