import { afterEach, describe, expect, it } from "vitest";
import { SETTLE, SETTLE_SHA } from "../../worker/src/limits/lease-scripts.ts";
import { WriteBatch } from "../../worker/src/limits/write-batch.ts";
import { redis } from "./helpers.ts";
import { caller, counterValue, leased, limitsHarness, quiesceLimits, type TestBudget } from "./limits-helpers.ts";

// The end-of-request write batch (limits/write-batch.ts): budget settlements of many requests,
// merged per lease record and sent as one script call by its SHA.

afterEach(quiesceLimits);

const budget = (): TestBudget => ({ id: `bud-${crypto.randomUUID()}`, kind: "tokens", period: "day", amount: 100_000 });

/** Four requests admitted from one lease (the first takes it: its need and three more), finished in one batch with 3 to 6 tokens used. */
async function fourSettledInOneBatch(before?: () => Promise<unknown>): Promise<{ key: string; batch: WriteBatch }> {
  const h = await limitsHarness();
  const spend = budget();
  const who = caller({}, { budgets: [spend] });
  const admitted = [];
  for (let i = 0; i < 4; i++) admitted.push(await h.admit(who, { tokens: 10 }));
  expect(admitted.slice(1).map((a) => a.path)).toEqual(["local", "local", "local"]);
  const batch = new WriteBatch(redis().pipeline());
  for (const [i, a] of admitted.entries()) await a.finish({ tokens: 3 + i, spend: 0, requests: 1 }, batch);
  await before?.();
  await batch.exec(redis());
  return { key: h.budgetKey(spend), batch };
}

describe("the end-of-request write batch", () => {
  it("settles every request exactly, in one script call for the lease they came from", async () => {
    const { key, batch } = await fourSettledInOneBatch();
    // counter = settled usage + what the lease still holds (no request in flight)
    expect((await counterValue(key)) - (await leased(key))).toBe(3 + 4 + 5 + 6);
    expect(batch.pipe.length()).toBe(1);
  });

  it("still settles when Redis has lost its scripts (NOSCRIPT): the script goes again by its text", async () => {
    const { key } = await fourSettledInOneBatch(() => redis().scriptFlush());
    expect((await counterValue(key)) - (await leased(key))).toBe(18);
  });

  it("names SETTLE by the SHA-1 of its text (a script edited without its SHA would never run by SHA)", async () => {
    const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(SETTLE));
    expect([...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("")).toBe(SETTLE_SHA);
  });

  it("rejects when Redis refuses one of its writes, so the caller's degraded mode applies", async () => {
    const key = `sy:wtest:wb:${crypto.randomUUID()}`;
    await redis().set(key, "a string");
    const batch = new WriteBatch(redis().pipeline());
    batch.pipe.lpush(key, "x");
    await expect(batch.exec(redis())).rejects.toThrow(/Redis refused a write of the batch: WRONGTYPE/);
    await redis().del(key);
  });
});
