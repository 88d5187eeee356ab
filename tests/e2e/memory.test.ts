/**
 * End to end: memory trails (docs/memory.md) over plain HTTP against the real local stack (wrangler
 * dev + Postgres + Redis, started as `npm start` does), and the admin CLI's `memory cool` and
 * `memory trails` run as separate processes, exactly as `npm run admin` runs them.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDb, type NodeDb } from "../../dev/db.ts";
import type { Stack } from "../../dev/stack.ts";
import { memoryBreadcrumbs, memoryTrails } from "../../schema/tables/index.ts";
import type { BreadcrumbJson, HotTrailsJson, TrailDetailJson } from "../../worker/src/memory/wire.ts";
import { newTenantKey } from "../support/e2e-calls.ts";
import { startTestStack, type TestStack } from "../support/e2e-stack.ts";

const run = promisify(execFile);
let started: TestStack;
let stack: Stack;
let db: NodeDb;

beforeAll(async () => {
  started = await startTestStack("memory");
  stack = started.stack;
  db = openDb(started.databaseUrl);
}, 120_000);

afterAll(async () => {
  await db?.close();
  await started?.close();
});

/** A plain HTTP call with a key; the status and the parsed body. */
async function call<T>(key: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(`${stack.gatewayUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as T };
}

/** Runs the admin CLI against the stack and returns its stdout. */
async function cli(args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, ["worker/cli/admin.ts", ...args, "--url", stack.gatewayUrl, "--token", stack.adminToken]);
  return stdout.trim();
}

describe("memory trails over HTTP", () => {
  it("leaves breadcrumbs, warms the trail, lists it hot and shows it with its breadcrumbs; another tenant gets 404", async () => {
    const a = await newTenantKey(stack, "memory-a");
    const b = await newTenantKey(stack, "memory-b");
    const first = await call<BreadcrumbJson>(a.key, "POST", "/v1/memory/breadcrumb", { source: "planner", target: "payments", content: "retries need idempotency keys" });
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ object: "memory.breadcrumb", source: "planner", target: "payments", temperature: 85 });
    const second = await call<BreadcrumbJson>(a.key, "POST", "/v1/memory/breadcrumb", { source: "planner", target: "payments", content: "and a dead-letter queue" });
    expect(second.body).toMatchObject({ trail_id: first.body.trail_id, temperature: 95 });
    const other = await call<BreadcrumbJson>(a.key, "POST", "/v1/memory/breadcrumb", { source: "planner", content: "no target" });
    expect(other.body.trail_id).not.toBe(first.body.trail_id);

    const hot = await call<HotTrailsJson>(a.key, "GET", "/v1/memory/trails/hot?min_temp=70");
    expect(hot.status).toBe(200);
    expect(hot.body.count).toBe(2);
    expect(hot.body.trails.map((t) => [t.id, t.temperature])).toEqual([
      [first.body.trail_id, 95],
      [other.body.trail_id, 85],
    ]);

    const detail = await call<TrailDetailJson>(a.key, "GET", `/v1/memory/trails/${first.body.trail_id}`);
    expect(detail.status).toBe(200);
    expect(detail.body.recent_breadcrumbs.map((c) => c.content)).toEqual(["and a dead-letter queue", "retries need idempotency keys"]);

    expect((await call(b.key, "GET", `/v1/memory/trails/${first.body.trail_id}`)).status).toBe(404);
    expect((await call<HotTrailsJson>(b.key, "GET", "/v1/memory/trails/hot?min_temp=0")).body.count).toBe(0);

    const bad = await call<{ error: { code: string; param: string } }>(a.key, "POST", "/v1/memory/breadcrumb", { source: "planner", content: "" });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({ code: "invalid_value", param: "content" });
  });

  it("`memory cool` removes cold trails past retention and keeps the rest; `memory trails` lists them", async () => {
    const t = await newTenantKey(stack, "memory-cool");
    const gone = await call<BreadcrumbJson>(t.key, "POST", "/v1/memory/breadcrumb", { source: "old", content: "forgotten" });
    const kept = await call<BreadcrumbJson>(t.key, "POST", "/v1/memory/breadcrumb", { source: "new", content: "remembered" });
    // Forty days without a breadcrumb, ten half-lives cold.
    await db.db.update(memoryTrails).set({ temperatureAt: sql`now() - interval '10 days'`, createdAt: sql`now() - interval '40 days'` }).where(eq(memoryTrails.id, gone.body.trail_id));
    await db.db.update(memoryBreadcrumbs).set({ at: sql`now() - interval '40 days'` }).where(eq(memoryBreadcrumbs.trailId, gone.body.trail_id));

    const listed = await cli(["memory", "trails", "--tenant", t.tenantId]);
    expect(listed).toContain(gone.body.trail_id);
    expect(listed).toContain(kept.body.trail_id);

    const cooled = await cli(["memory", "cool"]);
    expect(cooled).toMatch(/^Cooled \d+ trails, removed 1 \(cold below 5, no breadcrumb for 30 days; half-life 24 h\)/);
    expect(cooled).toContain(gone.body.trail_id);

    expect((await call(t.key, "GET", `/v1/memory/trails/${gone.body.trail_id}`)).status).toBe(404);
    // Still 85, decayed only by the seconds the test took (24 h half-life: 85 becomes 84.99 after about 11 s).
    expect((await call<TrailDetailJson>(t.key, "GET", `/v1/memory/trails/${kept.body.trail_id}`)).body.temperature).toBeCloseTo(85, 1);
    const after = JSON.parse(await cli(["memory", "trails", "--tenant", t.tenantId, "--json"])) as { data: { id: string }[] };
    expect(after.data.map((r) => r.id)).toEqual([kept.body.trail_id]);
  });
});
