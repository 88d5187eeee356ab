import { env } from "cloudflare:test";
import { eq, sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { usageHourly, usageRecords } from "../../schema/tables/index.ts";
import { usageOutboxKey, writeUsageBatch } from "../../worker/src/metering/flush.ts";
import type { UsageRow } from "../../worker/src/metering/record.ts";
import { backlog, drain, enqueue } from "../../worker/src/platform/outbox.ts";
import { admin, expectStatus, sandbox } from "./admin-helpers.ts";
import { flushNow, gateway, query, redis } from "./helpers.ts";

function rows(tenantId: string, n: number): UsageRow[] {
  const at = new Date(Date.UTC(2026, 10, 23, 10, 15));
  return Array.from({ length: n }, (_, i) => ({
    id: `req_${tenantId}_${i}`,
    at: new Date(at.getTime() + i * 60_000 * 20), // spans two hours
    tenantId,
    environmentId: "env_f",
    apiKeyId: "key_f",
    endpoint: "chat",
    model: "sim-llama-8b",
    regionId: "local",
    nodeId: "n",
    status: "ok",
    httpStatus: 200,
    streamed: false,
    promptTokens: 10 + i,
    completionTokens: 5,
    cachedPromptTokens: 0,
    ttftMs: 3,
    latencyMs: 9,
    costMicros: 2,
    errorCode: null,
  }));
}

async function totals(tenantId: string) {
  return query(async (db) => {
    const [records] = await db
      .select({ n: sql<number>`count(*)::int`, prompt: sql<number>`coalesce(sum(prompt_tokens),0)::int`, completion: sql<number>`coalesce(sum(completion_tokens),0)::int` })
      .from(usageRecords)
      .where(eq(usageRecords.tenantId, tenantId));
    const [hourly] = await db
      .select({ n: sql<number>`coalesce(sum(requests),0)::int`, prompt: sql<number>`coalesce(sum(prompt_tokens),0)::int`, completion: sql<number>`coalesce(sum(completion_tokens),0)::int`, hours: sql<number>`count(*)::int` })
      .from(usageHourly)
      .where(eq(usageHourly.tenantId, tenantId));
    return { records, hourly };
  });
}

describe("usage flush", () => {
  it("writes records and hourly rollups that equal them", async () => {
    const tenant = `ten_flush_${crypto.randomUUID().slice(0, 8)}`;
    for (const row of rows(tenant, 6)) await enqueue(redis(), usageOutboxKey(env.REDIS_PREFIX), row);
    await flushNow();
    const { records, hourly } = await totals(tenant);
    expect(records).toEqual({ n: 6, prompt: 10 + 11 + 12 + 13 + 14 + 15, completion: 30 });
    expect(hourly).toMatchObject({ n: 6, prompt: records?.prompt, completion: 30, hours: 2 });
  });

  it("counts nothing twice when a flush dies between its commit and its acknowledgement", async () => {
    const tenant = `ten_crash_${crypto.randomUUID().slice(0, 8)}`;
    const key = `${env.REDIS_PREFIX}crash-${crypto.randomUUID()}:`;
    for (const row of rows(tenant, 4)) await enqueue(redis(), usageOutboxKey(key), row);
    // The batch is committed, then the run is killed before it deletes the in-flight list.
    const killed = drain<Parameters<typeof writeUsageBatch>[1][number]>(redis(), usageOutboxKey(key), async (items) => {
      await query((db) => writeUsageBatch(db, items));
      throw new Error("killed before acknowledge");
    });
    await expect(killed).rejects.toThrow("killed before acknowledge");
    expect(await backlog(redis(), usageOutboxKey(key))).toBe(4);

    // The next run redelivers the same batch: records are idempotent and rollups only count new inserts.
    await drain<Parameters<typeof writeUsageBatch>[1][number]>(redis(), usageOutboxKey(key), (items) => query((db) => writeUsageBatch(db, items)));
    expect(await backlog(redis(), usageOutboxKey(key))).toBe(0);
    const { records, hourly } = await totals(tenant);
    expect(records?.n).toBe(4);
    expect(hourly?.n).toBe(4);
    expect(hourly?.prompt).toBe(records?.prompt);
  });

  it("keeps a batch that failed before its commit for the next run", async () => {
    const tenant = `ten_fail_${crypto.randomUUID().slice(0, 8)}`;
    const key = `${env.REDIS_PREFIX}fail-${crypto.randomUUID()}:`;
    for (const row of rows(tenant, 3)) await enqueue(redis(), usageOutboxKey(key), row);
    await expect(drain(redis(), usageOutboxKey(key), async () => Promise.reject(new Error("database down")))).rejects.toThrow("database down");
    expect(await backlog(redis(), usageOutboxKey(key))).toBe(3);
    expect((await totals(tenant)).records?.n).toBe(0);
    await drain<Parameters<typeof writeUsageBatch>[1][number]>(redis(), usageOutboxKey(key), (items) => query((db) => writeUsageBatch(db, items)));
    expect((await totals(tenant)).records?.n).toBe(3);
  });

  it("moves a poison event to the dead-letter list instead of blocking the queue, and replays it on demand", async () => {
    const tenant = `ten_poison_${crypto.randomUUID().slice(0, 8)}`;
    const queue = usageOutboxKey(env.REDIS_PREFIX);
    const good = rows(tenant, 3);
    await enqueue(redis(), queue, good[0]);
    // One event the database refuses (a token count that is not a number), one that is not JSON at all.
    await enqueue(redis(), queue, { ...good[1], id: `${tenant}_bad`, promptTokens: "lots" });
    await redis().lpush(queue, "{not json");
    await enqueue(redis(), queue, good[1]);
    await enqueue(redis(), queue, good[2]);
    await flushNow();

    expect((await totals(tenant)).records?.n).toBe(3);
    expect(await backlog(redis(), queue)).toBe(0);
    const dead = expectStatus(await admin<{ backlog: number; data: { item: string; error: string }[] }>("GET", "/outbox/usage"), 200);
    const mine = dead.data.filter((d) => d.item.includes(tenant) || d.item === "{not json");
    expect(mine.map((d) => (d.item === "{not json" ? "raw" : "bad")).sort()).toEqual(["bad", "raw"]);
    expect(mine.find((d) => d.item === "{not json")?.error).toContain("not JSON");
    expect(mine.find((d) => d.item.includes(tenant))?.error).toMatch(/lots|invalid input/i);
    const metrics = await (await gateway("/admin/metrics", { key: env.ADMIN_TOKEN })).text();
    expect(Number(/switchyard_outbox_dead_letters\{queue="usage"\} (\d+)/.exec(metrics)?.[1])).toBeGreaterThanOrEqual(2);
    expect((await admin("GET", "/outbox/usage", undefined, (await sandbox()).adminKey)).status).toBe(403);

    // Replay puts them back in the queue; they are still poison, so they come back to the dead letters.
    const replayed = expectStatus(await admin<{ replayed: number }>("POST", "/outbox/usage/replay"), 200);
    expect(replayed.replayed).toBeGreaterThanOrEqual(2);
    await flushNow();
    expect(await backlog(redis(), queue)).toBe(0);
    const again = expectStatus(await admin<{ data: { item: string }[] }>("GET", "/outbox/usage"), 200);
    expect(again.data.filter((d) => d.item.includes(tenant) || d.item === "{not json")).toHaveLength(2);
    expect((await totals(tenant)).records?.n).toBe(3);
  });
});
